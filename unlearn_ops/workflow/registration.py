"""Registering the workspace's ensemble as a model version, and closing its requests.

The data revision is recorded before the version is registered (so every version points
at a commit that exists); `promote_and_close` moves `champion` last, only when the gates
pass, and records the outcome (`served` or `failed`) in the ledger and in a last commit.
That commit follows the data revision of the same flow, after which only the ledger (git)
and `registry.json` (the `register` stage's output) changed: DVC commits that stage alone.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.privacy.mitigations import noisy_model_files, release_tags
from unlearn_ops.serving.promotion import honoured_requests
from unlearn_ops.serving.provenance import VersionProvenance, describe_version
from unlearn_ops.serving.versions import NewVersion, schema_example
from unlearn_ops.workflow.gated_promotion import promote_or_record_failure
from unlearn_ops.workflow.retraining import ShardTrained
from unlearn_ops.workflow.revisions import REGISTER_STAGE, DataRevision, record_revision
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.adapters.gx.gates import GateResult
    from unlearn_ops.serving.versions import VersionInfo

__all__ = ["promote_and_close", "register_version"]


def register_version(
    workspace: Workspace,
    *,
    kind: Literal["train", "forget", "replay", "repro"],
    requests: Sequence[ForgetRequest],
    trained: Sequence[ShardTrained],
    revision: DataRevision,
    gates: Sequence[GateResult],
    metrics: dict[str, float],
    timings: dict[str, float],
    replayed: Sequence[str] = (),
    approximate_method: str | None = None,
) -> VersionInfo:
    """Log the ensemble as a new version of the workspace's registry; write registry.json.

    `replayed` names the ledger requests a `replay` version applies onto an older one
    (their ids are known only as keyed hashes, so they are counted from the ledger);
    `approximate_method` the method that made a provisional version (its description
    says so).
    """
    import numpy as np
    import pandas as pd

    registry = workspace.registry()
    ensemble = workspace.ensemble
    columns = ensemble.columns()
    parent = workspace.read_json(workspace.registry_path) or {}
    retrained_models = [t for t in trained if t.stages]
    first_stages = {t.shard_id: t.first_stage for t in retrained_models}
    retrained = sorted(first_stages)
    weights = {
        s: (ensemble.served_model_info(s) or {}).get("weights_hash", "") for s in ensemble.shard_ids
    }
    request_ids = tuple(r.request_id for r in requests) + tuple(replayed)
    states = workspace.ledger.requests() if replayed else {}
    replayed_hashes = {h for r in replayed if r in states for h in states[r].record_hashes}
    provenance = VersionProvenance(
        kind=kind,
        request_ids=request_ids,
        honoured_request_ids=tuple(honoured_requests(workspace)),
        parent_version=parent.get("version"),
        git_sha=revision.git_sha,
        data_md5=revision.shards_md5,
        shard_md5s=revision.shard_md5s,
        shards_retrained=tuple(retrained),
        first_stages=first_stages,
        records_forgotten=len({h for r in requests for h in r.record_hashes(workspace.settings)})
        + len(replayed_hashes),
        training_hash=workspace.params.training_hash(),
        seed=workspace.params.seed,
        weights=weights,
        gates={g.gate: g.to_dict() for g in gates},
        timings=timings,
        accuracy=metrics["accuracy"],
        approximate_method=approximate_method,
    )
    tables = [ensemble.read_shard(s) for s in ensemble.shard_ids]
    training_frame = pd.concat(tables, ignore_index=True)
    sample = schema_example(training_frame[list(columns.feature_columns)])
    output = ensemble.predict_proba(sample.to_numpy(dtype=np.float32))
    output_frame = pd.DataFrame(
        output, columns=[f"probability_{k}" for k in range(columns.num_classes)]
    )
    output_frame.insert(0, "prediction", output.argmax(axis=1))
    model_files = {f"shard-{s:03d}": ensemble.model_path(s) for s in ensemble.shard_ids}
    model_files["ensemble"] = workspace.root / "ensemble.json"
    model_files["params"] = workspace.params_path
    flat_params = {
        "seed": workspace.params.seed,
        "shards": workspace.params.sisa.shards,
        "slices": workspace.params.sisa.slices,
        "aggregation": workspace.params.sisa.aggregation,
        "model": workspace.params.model.name,
        "epochs_per_stage": workspace.params.training.epochs_per_stage,
        "batch_size": workspace.params.training.batch_size,
        "learning_rate": workspace.params.training.learning_rate,
        "dataset": workspace.params.dataset.source,
    }
    with tempfile.TemporaryDirectory(prefix="unlearn-release-") as scratch:
        if workspace.params.release.weight_noise > 0:
            # Fresh noise on the released copies only (issue 12: the pair's Δθ leaks).
            model_files = noisy_model_files(
                model_files,
                workspace.params.release.weight_noise,
                version=f"{revision.git_sha}:{','.join(request_ids)}",
                directory=Path(scratch),
            )
        version = registry.log_version(
            NewVersion(
                provenance=provenance,
                description=describe_version(
                    provenance, workspace.params.sisa.shards, model_name=workspace.model_name
                ),
                model_files=model_files,
                training_frame=training_frame,
                dataset_source=str(ensemble.shards_dir),
                params=flat_params,
                metrics={
                    "accuracy": metrics["accuracy"],
                    "train_records": float(len(training_frame)),
                },
                signature_frames=(sample, output_frame),
            )
        )
    tags = release_tags(workspace.params, ensemble)
    for key, value in tags.items():
        registry.set_version_tag(version.version, key, value)
    from unlearn_ops.workflow.membership_audit import tag_gate_audit

    if tag_gate_audit(registry, version.version, gates) or tags:
        version = registry.get_version(version.version)
    workspace.write_json(
        workspace.registry_path,
        {
            "model_name": workspace.model_name,
            "version": version.version,
            "git_sha": revision.git_sha,
        },
    )
    return version


def promote_and_close(
    workspace: Workspace,
    requests: Sequence[ForgetRequest],
    version: VersionInfo,
    gates: Sequence[GateResult],
) -> str:
    """Promote `version` if its gates passed, record the outcome, commit it.

    The ledger says `served` (champion moved) or `failed` (with the gate summary and the
    unpromoted version); registry.json, the ledger and dvc.lock are committed either way.

    Raises:
        GateFailedError: a gate failed; `champion` stays where it was.
    """
    facts = promote_or_record_failure(
        workspace,
        [request.request_id for request in requests],
        version,
        gates,
        stages=[REGISTER_STAGE],
    )
    for request in requests:
        workspace.ledger.append(
            "served", request.request_id, version=version.version, version_facts=facts
        )
    record_revision(
        workspace, f"unlearn-ops: version {version.version} is champion", stages=[REGISTER_STAGE]
    )
    return version.version

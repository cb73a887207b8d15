"""Registering a federation's served model: the groups as a SISA-shaped model, its gate, tags.

The served model (the mean of the groups' probabilities) is registered like a SISA
ensemble, one `shard-GGG` state dict per group, so the SISA pyfunc model serves it; the
tags name removed clients by keyed hash only. Its lineage is a git revision of the
federation's membership, served groups and ledger
(:data:`~unlearn_ops.workflow.revisions.FEDERATION_FILES`), tagged
`unlearn/forget/REQUEST` for each request, whose sha the version records (`git_sha`).

A FedEraser removal is approximate, so its version is provisional like an approximate
forget of records (issue 14): tagged `unlearn.exact=false`, `unlearn.provisional=true`,
`unlearn.method=federaser` and `unlearn.approximate_requests` (its request, and those of an
earlier FedEraser group it still serves), with `served` entries marked approximate and the
exact removal due by the request's deadline. A later version that serves every one of those
requests exactly (the exact removal of the same request retrains the client's group; a
new training retrains all) supersedes it (`unlearn.superseded_by`), and the ledger records
each request served exactly.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeGuard

import numpy as np

from unlearn_ops.federated.config import FederationParams
from unlearn_ops.serving.provenance import VersionProvenance
from unlearn_ops.serving.versions import CHAMPION, NewVersion, VersionInfo, schema_example
from unlearn_ops.workflow.approx_tags import (
    APPROXIMATE_REQUESTS_TAG,
    approximate_requests,
    is_provisional,
    superseded_by,
)
from unlearn_ops.workflow.approx_versions import exact_due, supersede_provisional
from unlearn_ops.workflow.federated import (
    LABEL_COLUMN,
    METHOD_TAGS,
    RemovalMethod,
    RemovalReason,
    active_clients,
    federation_folder,
    read_state,
    served_groups,
    write_state,
)
from unlearn_ops.workflow.revisions import record_federation, request_tag
from unlearn_ops.workflow.workspace import Workspace

__all__ = ["register_federated_version", "register_removal"]


def _evaluate(workspace: Workspace, model_files: Mapping[str, Path]) -> tuple[float, Any, Any]:
    """Held-out accuracy of the served model, and (input, output) frames for its signature."""
    import pandas as pd

    from unlearn_ops.serving.predictor import EnsemblePredictor

    holdout = pd.read_parquet(federation_folder(workspace) / "holdout.parquet")
    predictor = EnsemblePredictor.from_artifacts(model_files)
    predicted = predictor.predict(holdout)["prediction"].to_numpy()
    accuracy = float(np.mean(predicted == holdout[LABEL_COLUMN]))
    sample = schema_example(holdout.drop(columns=[LABEL_COLUMN]))
    return accuracy, sample, predictor.predict(sample)


def _model_files(workspace: Workspace, state: Mapping[str, Any], scratch: Path) -> dict[str, Path]:
    """The served groups as a SISA-shaped model: `shard-GGG` state dicts, manifest, params."""
    import torch

    from unlearn_ops.federated.client import load_weights
    from unlearn_ops.federated.groups import decode_weights
    from unlearn_ops.params import Params

    params = FederationParams.model_validate(state["params"])
    served = served_groups(workspace)
    files: dict[str, Path] = {}
    for group, facts in sorted(served.items(), key=lambda item: int(item[0])):
        run = federation_folder(workspace) / "runs" / facts["run"]
        weights = decode_weights((run / facts["final"]).read_bytes())
        module = load_weights(weights, params, state["num_features"], state["num_classes"])
        path = scratch / f"group-{int(group):03d}.pt"
        torch.save(module.state_dict(), path)
        files[f"shard-{int(group):03d}"] = path
    manifest = scratch / "ensemble.json"
    manifest.write_text(
        json.dumps(
            {"feature_columns": state["feature_columns"], "num_classes": state["num_classes"]}
        )
    )
    files["ensemble"] = manifest
    version_params = Params.model_validate(
        {**workspace.params.model_dump(mode="json"), "model": params.model.model_dump(mode="json")}
    )
    files["params"] = scratch / "params.yaml"
    files["params"].write_text(version_params.to_yaml(), encoding="utf-8")
    return files


def register_federated_version(
    workspace: Workspace,
    *,
    kind: Literal["train", "forget"],
    request_ids: tuple[str, ...] = (),
    removed: Mapping[str, RemovalReason] | None = None,
    method: str = "",
    groups_retrained: tuple[int, ...] = (),
    timings: Mapping[str, float] | None = None,
) -> VersionInfo:
    """Register the served groups as a version, move `champion` to it, close the requests.

    The tags name removed clients by keyed hash only (`unlearn.clients_removed`, a JSON
    list, cumulative), the removal method and reason, and each group's run and weights.

    Raises:
        GateFailedError: the candidate's held-out accuracy dropped more than
            `gates.max_accuracy_drop` below the champion's (`champion` stays).
    """
    import pandas as pd

    from unlearn_ops.errors import GateFailedError

    removed = dict(removed or {})
    state = read_state(workspace)
    entries = {entry["client_hash"]: entry for entry in state["removed"]}
    for client_hash, reason in sorted(removed.items()):
        if client_hash in entries:  # the exact removal after a FedEraser one: the same client
            entries[client_hash]["method"] = method
            continue
        state["removed"].append(
            {"client_hash": client_hash, "reason": reason, "method": method}
            | {"requests": list(request_ids)}
        )
    # The lineage: the membership (keyed hashes, removals), the served groups and the
    # ledger committed, each request's tag on that revision; the version names it.
    write_state(workspace, "federation.json", state)
    git_sha = record_federation(
        workspace,
        f"unlearn-ops: federated {kind}"
        + (f" for {', '.join(request_ids)}" if request_ids else ""),
        tags=[request_tag(r) for r in request_ids],
    )
    registry = workspace.registry()
    served = served_groups(workspace)
    champion = registry.alias_version(CHAMPION)
    champion_info = None if champion is None else registry.get_version(champion)
    erased = method == METHOD_TAGS["federaser"]
    approximate = _still_approximate(state, champion_info, kind, groups_retrained)
    approximate += [r for r in request_ids if erased and r not in approximate]
    with tempfile.TemporaryDirectory(prefix="unlearn-federated-") as scratch:
        files = _model_files(workspace, state, Path(scratch))
        accuracy, sample, output = _evaluate(workspace, files)
        previous, honoured = None, []
        if champion is not None:
            current = registry.get_version(champion)
            previous, honoured = float(current.tag("accuracy")), current.honoured_requests
        drop = 0.0 if previous is None else previous - accuracy
        passed = drop <= workspace.params.gates.max_accuracy_drop
        gate = {"passed": passed, "accuracy": accuracy, "champion_accuracy": previous}
        all_removed = sorted({r["client_hash"] for r in state["removed"]})
        provenance = VersionProvenance(
            kind=kind,
            request_ids=request_ids,
            # Cumulative, as for record deletions: the champion's, then this version's.
            honoured_request_ids=tuple(dict.fromkeys((*honoured, *request_ids))),
            parent_version=champion,
            git_sha=git_sha,
            data_md5="",
            shard_md5s={},
            shards_retrained=groups_retrained,
            first_stages={g: 0 for g in groups_retrained},
            records_forgotten=0,
            training_hash="",
            seed=int(state["params"]["seed"]),
            weights={int(g): f["weights_hash"] for g, f in served.items()},
            gates={"metric": gate},
            timings=dict(timings or {}),
            accuracy=accuracy,
            extra={
                "engine": "flower",
                "clients_removed": json.dumps(all_removed),
                "removal_method": method,
                # FedEraser's model is approximate: no certificate, provisional (issue 13).
                "provisional": str(bool(approximate)).lower(),
                **(
                    {
                        "exact": "false",
                        "method": METHOD_TAGS["federaser"],
                        APPROXIMATE_REQUESTS_TAG: json.dumps(approximate),
                    }
                    if approximate
                    else {}
                ),
                "removal_reasons": json.dumps(sorted(set(removed.values()))),
                "federation.runs": json.dumps({g: f["run"] for g, f in sorted(served.items())}),
            },
        )
        manifest = pd.DataFrame(
            [{"client_hash": c["client_hash"], "group": c["group"]} for c in active_clients(state)]
        )
        version = registry.log_version(
            NewVersion(
                provenance=provenance,
                description=(
                    f"federated model of {len(served)} client group(s)"
                    + (f"; {len(removed)} client(s) removed ({method})" if removed else "")
                ),
                model_files=files,
                training_frame=manifest,
                dataset_source=str(federation_folder(workspace) / "federation.json"),
                params={"groups": len(served), "rounds": state["params"]["rounds"]},
                metrics={"accuracy": accuracy},
                signature_frames=(sample, output),
            )
        )
    if not passed:
        for request_id in request_ids:
            workspace.ledger.append(
                "failed", request_id, reason="metric gate", version=version.version
            )
        raise GateFailedError(version.version, f"held-out accuracy dropped {drop:.3f}", champion)
    registry.set_alias(CHAMPION, version.version)
    due = exact_due(workspace, request_ids) if erased else None
    for request_id in request_ids:
        workspace.ledger.append(
            "served",
            request_id,
            version=version.version,
            client_hashes=sorted(removed),
            method=method,
            reason=", ".join(sorted(set(removed.values()))),
            **({"approximate": True, "exact_due": due and due.isoformat()} if erased else {}),
        )
    if _pending(champion_info) and not erased:
        # Requests an earlier FedEraser version served approximately, now served exactly.
        now_exact = set(approximate_requests(champion_info)) - {*approximate, *request_ids}
        for request_id in sorted(now_exact):
            workspace.ledger.append("served", request_id, version=version.version, exact=True)
        supersede_provisional(registry, version, approximate)
    return version


def _pending(version: VersionInfo | None) -> TypeGuard[VersionInfo]:
    """A provisional version not yet superseded: its requests wait for the exact removal."""
    return version is not None and is_provisional(version) and superseded_by(version) is None


def _still_approximate(
    state: Mapping[str, Any],
    champion: VersionInfo | None,
    kind: str,
    groups_retrained: tuple[int, ...],
) -> list[str]:
    """The champion's approximate requests whose erased groups this version still serves.

    A training run retrains every group; a removal, `groups_retrained` (from scratch,
    exactly): a request whose client's group is among them is served exactly from now on.
    """
    if kind == "train" or not _pending(champion):
        return []
    group_of = {c["client_hash"]: int(c["group"]) for c in state["clients"]}
    groups: dict[str, set[int]] = {}
    for entry in state["removed"]:
        for request_id in entry.get("requests", []):
            groups.setdefault(request_id, set()).add(group_of[entry["client_hash"]])
    return [
        r
        for r in approximate_requests(champion)
        if not groups.get(r, set()) <= set(groups_retrained)
    ]


def register_removal(
    workspace: Workspace,
    request_id: str,
    client_hash: str,
    group: int,
    reason: RemovalReason = "withdrawal",
    method: RemovalMethod = "exact",
) -> VersionInfo:
    """Register the version after one client's removal from `group` (see above)."""
    return register_federated_version(
        workspace,
        kind="forget",
        request_ids=(request_id,),
        removed={client_hash: reason},
        method=METHOD_TAGS[method],
        groups_retrained=(group,),
    )

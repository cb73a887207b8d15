"""The steps of the train and forget pipelines, as library calls that flows string together.

Each step takes an opened :class:`Workspace` and does one thing: receive requests into the
ledger, remove records, train a shard, evaluate, gate, record the data revision, register
a version, promote it. `pipelines/` wraps them in Prefect tasks and holds no logic.

Order in a forget, and why: records are removed and retrained *before* anything is
committed, the data revision is committed before the version is registered (so every
version points at a commit that exists), and `champion` moves last, only when the gates
pass. A crash anywhere leaves the champion as it was; running the same requests again
finds their ids forgotten, retrains whatever is stale, and completes the registration.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.errors import (
    DatasetError,
    GateFailedError,
    InvalidRequestError,
    LineageError,
    UnsafeVersionError,
)
from unlearn_ops.serving.provenance import VersionProvenance, describe_version
from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.sisa.planning import RetrainingPlan
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

    from unlearn_ops.adapters.dvc.lineage import DataRevision
    from unlearn_ops.adapters.gx.gates import GateResult
    from unlearn_ops.adapters.mlflow.registry import MlflowRegistry, VersionInfo
    from unlearn_ops.serving.gates import GateRunner
    from unlearn_ops.sisa.verification import Certificate

__all__ = [
    "BatchOutcome",
    "ShardTrained",
    "apply_batch",
    "certify_version",
    "check_batch",
    "close_noop",
    "evaluate",
    "mark_applied",
    "open_registry",
    "prepare_data",
    "promote",
    "promote_and_close",
    "receive_requests",
    "record_revision",
    "register_version",
    "run_gates",
    "stale_shards",
    "train_one_shard",
    "workspace_lock",
]


@dataclass(frozen=True)
class ShardTrained:
    """What training one shard did (a small, serialisable summary)."""

    shard_id: int
    first_stage: int
    stages: tuple[int, ...]
    weights_hash: str
    seconds: float


@dataclass
class BatchOutcome:
    """How a batch of requests stands before any work: pending, or already served.

    Attributes:
        requests: the requests of the batch.
        plan: what removing their not-yet-forgotten records will retrain.
        served_by: for requests honoured already, the first version that honours them.
    """

    requests: list[ForgetRequest]
    plan: RetrainingPlan
    served_by: dict[str, str] = field(default_factory=dict)

    @property
    def is_noop(self) -> bool:
        """Every request is honoured by a registered version already."""
        return all(r.request_id in self.served_by for r in self.requests)


@contextlib.contextmanager
def workspace_lock(workspace: Workspace, timeout: float = 600.0) -> Iterator[None]:
    """Hold the workspace's lock: one flow changes a workspace at a time."""
    from filelock import FileLock, Timeout

    path = workspace.root / ".unlearn-ops" / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise InvalidRequestError(
            f"workspace {workspace.root} is busy with another flow",
            f"wait for it to finish (or remove {path} if no flow runs)",
        ) from exc
    try:
        _clear_stale_git_lock(workspace)
        yield
    finally:
        lock.release()


def _clear_stale_git_lock(workspace: Workspace) -> None:
    """Remove `.git/index.lock` left by a process killed in the middle of a commit.

    Every unlearn-ops writer of a workspace holds the workspace lock, so while we hold
    it no git command of ours runs there: a lock file left is one that a killed run left.
    """
    import logging

    stale = workspace.root / ".git" / "index.lock"
    if stale.exists():
        logging.getLogger("unlearn_ops").warning("removing %s left by an interrupted run", stale)
        stale.unlink(missing_ok=True)


def open_registry(workspace: Workspace) -> MlflowRegistry:
    """The workspace's registered model in MLflow."""
    from unlearn_ops.adapters.mlflow.registry import MlflowRegistry

    embedded = workspace.settings.tracking_uri is None
    return MlflowRegistry(
        workspace.tracking_uri,
        workspace.registry_uri,
        workspace.model_name,
        artifact_location=workspace.artifact_location if embedded else None,
    )


# ------------------------------------------------------------------------------- data
def prepare_data(workspace: Workspace) -> dict[int, int]:
    """Load the workspace's dataset and write the shard tables (forgotten records left out).

    With `dataset.subject_column` set, also write `subjects.json` (keyed hashes only) and
    keep the subject column out of the features.
    """
    from unlearn_ops.sisa.datasets import Dataset, load_dataset

    spec = workspace.params.dataset
    if spec.subject_column is None:
        dataset = load_dataset(
            spec.source,
            id_column=spec.id_column,
            label_column=spec.label_column,
            feature_columns=spec.feature_columns,
            base_dir=workspace.root,
        )
    else:
        table, source = _subject_table(workspace)
        features = spec.feature_columns or [
            c
            for c in table.columns
            if c not in (spec.id_column, spec.label_column, spec.subject_column)
        ]
        dataset = Dataset.from_frame(
            table,
            id_column=spec.id_column,
            label_column=spec.label_column,
            feature_columns=features,
            source=source,
        )
        _write_subjects(workspace, table, source)
    return workspace.ensemble.prepare(dataset)


def _subject_table(workspace: Workspace) -> tuple[pd.DataFrame, str]:
    from unlearn_ops.sisa.datasets import read_table

    spec = workspace.params.dataset
    path = Path(spec.source)
    path = path if path.is_absolute() else workspace.root / path
    if not path.is_file():
        raise DatasetError(
            spec.source,
            "dataset.subject_column needs a .csv or .parquet file, and there is none here",
        )
    table = read_table(path)
    if spec.subject_column not in table.columns:
        raise DatasetError(
            str(path),
            f"no column {spec.subject_column!r} (dataset.subject_column)",
            f"columns present: {', '.join(map(str, table.columns[:12]))}",
        )
    return table, str(path)


def _write_subjects(workspace: Workspace, table: pd.DataFrame, source: str) -> None:
    """subjects.json: keyed hash of each subject -> keyed hashes of its records."""
    from unlearn_ops.deletion.intake import build_subject_index, write_subject_index

    spec = workspace.params.dataset
    subjects = table[spec.subject_column]
    if subjects.isna().any():
        raise DatasetError(source, f"{int(subjects.isna().sum())} row(s) have no subject")
    index = build_subject_index(
        workspace.settings, subjects.tolist(), table[spec.id_column].tolist()
    )
    write_subject_index(workspace.root, index)


# --------------------------------------------------------------------------- requests
def receive_requests(workspace: Workspace, requests: Sequence[ForgetRequest]) -> None:
    """Record each new request as `received` in the ledger (ids as keyed hashes only).

    A request id seen before with the same records is the same request (no new entry);
    with other records it is refused, and nothing is written for the batch.

    Raises:
        InvalidRequestError: an empty batch, a request id twice in it, or a replay with
            changed records.
    """
    if not requests:
        raise InvalidRequestError("no requests given")
    ids = [r.request_id for r in requests]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise InvalidRequestError(f"request id(s) {', '.join(duplicated)} appear twice")
    known = workspace.ledger.requests()
    new = []
    for request in requests:
        hashes = request.record_hashes(workspace.settings)
        state = known.get(request.request_id)
        if state is None:
            new.append((request, hashes))
        elif sorted(state.record_hashes) != hashes:
            raise InvalidRequestError(
                f"request {request.request_id} was received before with other records",
                "a request id is an idempotency key: use a new id for new records",
            )
    # What removing the batch's records will retrain, recorded before anything is removed:
    # a run killed half-way leaves its shards retrained and no longer stale (issue 11, 7).
    record_ids = list(dict.fromkeys(r for request, _ in new for r in request.record_ids))
    plan = workspace.ensemble.plan_forget(record_ids) if record_ids else None
    retrains = {str(s.shard_id): s.first_stage for s in plan.shards} if plan else {}
    for request, hashes in new:
        workspace.ledger.append(
            "received",
            request.request_id,
            record_hashes=hashes,
            reason=request.reason,
            requested_at=request.requested_at.isoformat(),
            retrains=retrains,
        )


def check_batch(workspace: Workspace, requests: Sequence[ForgetRequest]) -> BatchOutcome:
    """Validate a batch against the data, the ledger and the registry; changes nothing.

    A request is served already when a version honours its id, or when every one of its
    records was forgotten by requests that a version serves (then the newest of those
    versions is the first that honours it).

    Raises:
        UnknownRecordsError: ids that were never in the data (the whole batch is refused).
    """
    record_ids = list(dict.fromkeys(r for request in requests for r in request.record_ids))
    plan = workspace.ensemble.plan_forget(record_ids)
    registry = open_registry(workspace)
    forgotten = workspace.ensemble.forgotten_hashes()
    served_by = {}
    for request in requests:
        version = registry.first_honouring(request.request_id)
        if version is not None:
            served_by[request.request_id] = version.version
            continue
        hashes = set(request.record_hashes(workspace.settings))
        if not hashes <= forgotten:
            continue
        serving = workspace.ledger.serving_requests(sorted(hashes))
        if set(serving) == hashes:
            # The first version honouring all of them, as registered now: the one the
            # ledger names may have been purged since.
            honouring = [registry.first_honouring(s.request_id) for s in serving.values()]
            if all(honouring):
                served_by[request.request_id] = str(
                    max(int(v.version) for v in honouring if v is not None)
                )
    return BatchOutcome(list(requests), plan, served_by)


def close_noop(workspace: Workspace, outcome: BatchOutcome) -> dict[str, Any]:
    """Requests found served already: `served` in the ledger, and named by their versions.

    A request whose records were all forgotten by earlier requests is honoured by every
    version that honours those; their `unlearn.honoured_requests` tags gain its id, so
    that a search by request id (and the MLflow UI) finds it like any other.
    """
    from unlearn_ops.compliance.audit import version_facts

    states = workspace.ledger.requests()
    registry = open_registry(workspace)
    versions = registry.versions()
    for request in outcome.requests:
        request_id = request.request_id
        version = outcome.served_by.get(request_id)
        if version is None:
            continue
        state = states.get(request_id)
        if state is None or state.served is None:
            facts = next((version_facts(v) for v in versions if v.version == version), None)
            extra = {"version_facts": facts} if facts else {}
            workspace.ledger.append("served", request_id, version=version, noop=True, **extra)
        hashes = request.record_hashes(workspace.settings)
        covering = {s.request_id for s in workspace.ledger.serving_requests(hashes).values()}
        if not covering:
            continue  # found by its own id: the versions name it already
        for info in versions:
            honoured = info.honoured_requests
            if request_id not in honoured and covering <= set(honoured):
                registry.set_version_tag(
                    info.version, "honoured_requests", json.dumps([*honoured, request_id])
                )
                registry.set_version_tag(info.version, "honoured_count", str(len(honoured) + 1))
    return describe_noop(outcome)


def apply_batch(workspace: Workspace, requests: Sequence[ForgetRequest]) -> RetrainingPlan:
    """Remove the batch's records from the shard files (no retraining yet).

    A batch that names its records by keyed hash only (removed already, by a run that
    crashed before registering) removes nothing; its shards are stale and retrain.
    """
    record_ids = list(dict.fromkeys(r for request in requests for r in request.record_ids))
    if not record_ids:
        return workspace.ensemble.plan_forget([])
    plan, _removed = workspace.ensemble.remove_records(record_ids)
    return plan


# --------------------------------------------------------------------------- training
def stale_shards(workspace: Workspace) -> list[int]:
    """Shards whose served model does not match their data: what must train now."""
    return workspace.ensemble.stale_shards()


def train_one_shard(workspace: Workspace, shard_id: int) -> ShardTrained:
    """Train (or resume) one shard; a Prefect task each, so shards run in parallel."""
    from unlearn_ops.sisa.progress import report_stage

    model = workspace.ensemble.train_shard(shard_id, progress=report_stage)
    return ShardTrained(
        shard_id,
        model.resumed_from_stage,
        tuple(model.stages_trained),
        model.weights_hash,
        model.seconds,
    )


def evaluate(workspace: Workspace) -> dict[str, float]:
    """Held-out accuracy of the served ensemble; written to metrics.json."""
    metrics = {
        "accuracy": workspace.ensemble.evaluate(),
        "holdout_records": float(len(workspace.ensemble.read_holdout())),
    }
    workspace.write_json(workspace.metrics_path, metrics)
    return metrics


def run_gates(
    workspace: Workspace,
    metrics: dict[str, float],
    champion_accuracy: float | None,
    gate_runner: GateRunner | None = None,
) -> list[GateResult]:
    """The data gate (no forgotten id in any shard, schema) and the metric gate.

    With a champion (`champion_accuracy` not None), its model is loaded from the registry
    and predicts the same held-out records as the candidate, so that the metric gate
    compares the two record by record (issue 11, finding 4); `metrics` is not read (the
    accuracy is recomputed per record). `gate_runner` defaults to great-expectations.
    """
    from unlearn_ops.adapters.gx.gates import GxGateRunner
    from unlearn_ops.adapters.mlflow.registry import CHAMPION
    from unlearn_ops.serving.gates import held_out_correctness

    runner = GxGateRunner() if gate_runner is None else gate_runner
    ensemble = workspace.ensemble
    columns = ensemble.columns()
    tables = {s: ensemble.read_shard(s) for s in ensemble.shard_ids}
    data = runner.run_data_gate(
        tables,
        id_column=columns.id_column,
        label_column=columns.label_column,
        feature_columns=columns.feature_columns,
        num_classes=columns.num_classes,
        forgotten_hashes=ensemble.forgotten_hashes(),
        hash_record_id=lambda r: workspace.settings.hash_record_id(canonical_id(r)),
    )
    served = None if champion_accuracy is None else open_registry(workspace).load_pyfunc(CHAMPION)
    correctness = held_out_correctness(
        ensemble.read_holdout(),
        id_column=columns.id_column,
        label_column=columns.label_column,
        feature_columns=columns.feature_columns,
        predict_candidate=lambda frame: ensemble.predict(frame.to_numpy()),
        predict_champion=None if served is None else lambda f: served.predict(f)["prediction"],
    )
    metric = runner.run_metric_gate(correctness, workspace.params.gates)
    return [data, metric]


# ------------------------------------------------------------------- lineage, registry
def request_tag(request_id: str) -> str:
    """The git tag that marks the data revision of a request."""
    return f"unlearn/forget/{request_id}"


def record_revision(
    workspace: Workspace, message: str, requests: Sequence[ForgetRequest] = ()
) -> DataRevision:
    """`dvc commit` + git commit + a tag per request: the revision a version trains from."""
    from unlearn_ops.adapters.dvc.lineage import record_revision as commit_revision

    return commit_revision(
        workspace.root,
        message,
        tags=[request_tag(r.request_id) for r in requests],
        shard_ids=workspace.ensemble.shard_ids,
    )


def mark_applied(
    workspace: Workspace, requests: Sequence[ForgetRequest], revision: DataRevision
) -> None:
    """Ledger: the requests' records are gone from the data at `revision`."""
    for request in requests:
        workspace.ledger.append("applied", request.request_id, **revision.to_dict())


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
    from unlearn_ops.compliance.audit import version_facts

    # The version's facts go into the ledger: a purge may delete the version later.
    facts = version_facts(version)
    try:
        promote(workspace, version, gates)
    except GateFailedError as exc:
        for request in requests:
            workspace.ledger.append(
                "failed",
                request.request_id,
                reason=exc.summary,
                version=version.version,
                version_facts=facts,
            )
        record_revision(workspace, f"unlearn-ops: version {version.version} failed its gates")
        raise
    for request in requests:
        workspace.ledger.append(
            "served", request.request_id, version=version.version, version_facts=facts
        )
    record_revision(workspace, f"unlearn-ops: version {version.version} is champion")
    return version.version


def honoured_requests(workspace: Workspace) -> list[str]:
    """Every request whose records are all forgotten in the current data, oldest first."""
    forgotten = workspace.ensemble.forgotten_hashes()
    return [
        state.request_id
        for state in workspace.ledger.requests().values()
        if state.record_hashes and set(state.record_hashes) <= forgotten
    ]


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
) -> VersionInfo:
    """Log the ensemble as a new MLflow version with its provenance; write registry.json.

    `replayed` names the ledger requests a `replay` version applies onto an older one
    (their ids are known only as keyed hashes, so they are counted from the ledger).
    """
    import numpy as np
    import pandas as pd

    registry = open_registry(workspace)
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
    )
    tables = [ensemble.read_shard(s) for s in ensemble.shard_ids]
    training_frame = pd.concat(tables, ignore_index=True)
    sample = training_frame[list(columns.feature_columns)].head(5)
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
    version = registry.log_version(
        provenance=provenance,
        description=describe_version(
            provenance, workspace.params.sisa.shards, model_name=workspace.model_name
        ),
        model_files=model_files,
        training_frame=training_frame,
        dataset_source=str(ensemble.shards_dir),
        params=flat_params,
        metrics={"accuracy": metrics["accuracy"], "train_records": float(len(training_frame))},
        signature_frames=(sample, output_frame),
    )
    workspace.write_json(
        workspace.registry_path,
        {
            "model_name": workspace.model_name,
            "version": version.version,
            "git_sha": revision.git_sha,
        },
    )
    return version


def promote(workspace: Workspace, version: VersionInfo, gates: Sequence[GateResult]) -> str:
    """Point `champion` at `version` if every gate passed (old champion -> `previous`).

    The one place `champion` moves, so it also holds the rule that a version which does
    not honour every deletion recorded so far is never served again, whatever the path.

    Raises:
        GateFailedError: a gate failed; `champion` stays where it was.
        UnsafeVersionError: `version` misses a recorded deletion; `champion` stays.
    """
    from unlearn_ops.adapters.gx.gates import summarise_failures
    from unlearn_ops.adapters.mlflow.registry import CHAMPION, PREVIOUS
    from unlearn_ops.workflow.rollback import missing_deletions

    registry = open_registry(workspace)
    champion = registry.alias_version(CHAMPION)
    if not all(g.passed for g in gates):
        raise GateFailedError(version.version, summarise_failures(gates), champion)
    missing = missing_deletions(version.honoured_requests, honoured_requests(workspace))
    if missing:
        raise UnsafeVersionError(version.version, missing, champion)
    if champion is not None and champion != version.version:
        registry.set_alias(PREVIOUS, champion)
    registry.set_alias(CHAMPION, version.version)
    return version.version


def champion_accuracy(workspace: Workspace) -> float | None:
    """Held-out accuracy recorded on the champion version (None without a champion)."""
    from unlearn_ops.adapters.mlflow.registry import CHAMPION

    registry = open_registry(workspace)
    champion = registry.alias_version(CHAMPION)
    if champion is None:
        return None
    value = registry.get_version(champion).tag("accuracy")
    return float(value) if value else None


class Stopwatch:
    """Seconds per named phase, for the `unlearn.timings` tag and the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block under `name` (added up if repeated)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def describe_noop(outcome: BatchOutcome) -> dict[str, Any]:
    """The answer of a batch that is served already."""
    return {
        "noop": True,
        "served_by": dict(outcome.served_by),
        "message": "; ".join(
            f"request {r} is honoured already by version {v}" for r, v in outcome.served_by.items()
        ),
    }


def certify_version(
    workspace: Workspace, version: str, shard_ids: Sequence[int] | None = None
) -> Certificate:
    """The exactness certificate of a registered version, from its own data revision.

    Reads the version's params and shard files as of its git commit (through DVC), trains
    the shards from scratch and compares with the weights hashes the version recorded.

    Raises:
        VersionNotFoundError: no such version.
        LineageError: the revision's data is no longer in the DVC cache or remote.
    """
    import io

    import pandas as pd
    import yaml

    from unlearn_ops.adapters.dvc.lineage import read_at_revision, read_git_file
    from unlearn_ops.params import Params
    from unlearn_ops.sisa.training import ShardColumns
    from unlearn_ops.sisa.verification import certify_tables

    info = open_registry(workspace).get_version(version)
    sha = info.tag("git_sha")
    weights = json.loads(info.tag("weights") or "{}")
    expected_md5s = json.loads(info.tag("shard_md5s") or "{}")
    params = Params.from_mapping(
        yaml.safe_load(read_git_file(workspace.root, sha, "params.yaml")),
        source=f"params.yaml at {sha[:12]}",
    )
    manifest = json.loads(read_at_revision(workspace.root, "ensemble.json", sha))
    columns = ShardColumns(
        id_column=manifest["id_column"],
        label_column=manifest["label_column"],
        feature_columns=tuple(manifest["feature_columns"]),
        num_classes=int(manifest["num_classes"]),
    )
    ids = range(params.sisa.shards) if shard_ids is None else sorted(set(shard_ids))
    tables = {}
    for shard_id in ids:
        data = read_at_revision(workspace.root, f"data/shards/shard-{shard_id:03d}.parquet", sha)
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if expected_md5s.get(str(shard_id), digest) != digest:
            raise LineageError(
                f"verifying version {info.version}",
                f"shard {shard_id} at git {sha[:12]} is not the data the version recorded "
                "(it was registered outside a flow, before its data was committed)",
            )
        tables[shard_id] = pd.read_parquet(io.BytesIO(data))
    return certify_tables(
        tables,
        params=params,
        columns=columns,
        settings=workspace.settings,
        served={s: {"weights_hash": weights.get(str(s), "")} for s in ids},
    )

"""Workspaces for the workflow tests: real files and ensemble, the ports faked in memory.

The registry and the lineage are the shipped fakes (:mod:`unlearn_ops.testing`), whose
contract tests hold them to MLflow and git + DVC; everything else is real: the shard
tables, the trained ensemble, the ledger, `forgotten.json`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import pytest

from tests.conftest import TINY_PARAMS, synthetic_frame
from unlearn_ops.adapters.gx.gates import ExpectationOutcome, GateResult
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.params import Params
from unlearn_ops.serving.provenance import VersionProvenance
from unlearn_ops.serving.versions import NewVersion, VersionInfo
from unlearn_ops.settings import Settings
from unlearn_ops.testing import InMemoryLineage, InMemoryRegistry
from unlearn_ops.workflow.preparation import prepare_data
from unlearn_ops.workflow.registration import register_version
from unlearn_ops.workflow.retraining import ShardTrained, evaluate, train_one_shard
from unlearn_ops.workflow.revisions import record_revision
from unlearn_ops.workflow.workspace import Workspace, write_workspace_files

WORKSPACE_PARAMS = Params.from_mapping(
    {
        **TINY_PARAMS,
        "dataset": {"source": "records.csv", "subject_column": "subject"},
        "registry": {"model_name": "workflow-test"},
        "gates": {"min_accuracy": 0.3, "max_accuracy_drop": 0.5},
    }
)
SETTINGS = Settings(device="cpu", torch_threads=1, max_parallel_shards=1)

OpenWorkspace = Callable[..., Workspace]


def new_root(root: Path, params: Params = WORKSPACE_PARAMS) -> Path:
    """A workspace's files and its dataset (300 records of synthetic blobs) as a CSV."""
    write_workspace_files(root, params)
    frame = synthetic_frame()
    frame.insert(1, "subject", [f"person-{i // 3}" for i in range(len(frame))])
    frame.to_csv(root / "records.csv", index=False)
    return root


def open_with_fakes(root: Path, **ports: object) -> Workspace:
    """The workspace at `root` with an in-memory registry and lineage (or those given)."""
    registry = ports.get("registry") or InMemoryRegistry(WORKSPACE_PARAMS.registry.model_name)
    lineage = ports.get("lineage") or InMemoryLineage(root)
    return Workspace.open(root, SETTINGS, registry=registry, lineage=lineage)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def trained_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace prepared, every shard trained and evaluated (copied by each test)."""
    root = new_root(tmp_path_factory.mktemp("workflow") / "ws")
    ws = open_with_fakes(root)
    prepare_data(ws)
    for shard_id in ws.ensemble.shard_ids:
        train_one_shard(ws, shard_id)
    evaluate(ws)
    return root


@pytest.fixture
def trained(tmp_path: Path, trained_root: Path) -> Workspace:
    """A private copy of the trained workspace, with fresh fakes (nothing registered)."""
    root = tmp_path / "ws"
    shutil.copytree(trained_root, root)
    ws = open_with_fakes(root)
    ws.lineage().init_repository()
    return ws


def request(request_id: str, record_ids: list[str]) -> ForgetRequest:
    """A deletion request, as the flows parse them."""
    return ForgetRequest.parse({"request_id": request_id, "record_ids": record_ids})


def gate(name: str, passed: bool) -> GateResult:
    """A gate result with one expectation that met `passed`."""
    outcome = ExpectationOutcome(
        "expect_column_values_to_be_between", "accuracy", passed, 0.5, "accuracy vs the floor"
    )
    return GateResult(name, passed, (outcome,))


def shard_records(ws: Workspace, shard_id: int, count: int) -> list[str]:
    """The first `count` record ids of a shard."""
    table = ws.ensemble.read_shard(shard_id)
    return [str(r) for r in table[ws.ensemble.columns().id_column][:count]]


def log_provenance_only(ws: Workspace, provenance: VersionProvenance) -> VersionInfo:
    """Log a version that carries `provenance` and nothing else (no files, data or metrics)."""
    return ws.registry().log_version(
        NewVersion(
            provenance=provenance,
            description="",
            model_files={},
            training_frame=None,
            dataset_source="",
            params={},
            metrics={},
        )
    )


def register_unrequested(
    ws: Workspace,
    kind: Literal["train", "forget"],
    gates: Sequence[GateResult],
    *,
    message: str | None = None,
    trained: Sequence[ShardTrained] = (),
    metrics: dict[str, float] | None = None,
) -> VersionInfo:
    """Record a revision, then register the ensemble as a `kind` version made for no request.

    Args:
        ws: the workspace.
        kind: the version's kind.
        gates: the gate results it carries.
        message: the revision's message (default: `kind`).
        trained: the shards trained for it.
        metrics: its metrics (default: evaluated once the revision is recorded).
    """
    revision = record_revision(ws, message or kind, [])
    return register_version(
        ws,
        kind=kind,
        requests=[],
        trained=trained,
        revision=revision,
        gates=gates,
        metrics=evaluate(ws) if metrics is None else metrics,
        timings={},
    )

"""Registering a version with its provenance, and closing its requests (ports faked)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.workflow.conftest import gate, open_with_fakes, request, shard_records
from unlearn_ops.errors import GateFailedError
from unlearn_ops.serving.versions import CHAMPION
from unlearn_ops.testing import InjectedCrashError, InMemoryRegistry, fail_at
from unlearn_ops.workflow.batch import apply_batch, receive_requests
from unlearn_ops.workflow.registration import promote_and_close, register_version
from unlearn_ops.workflow.retraining import ShardTrained, evaluate, train_one_shard
from unlearn_ops.workflow.revisions import mark_applied, record_revision
from unlearn_ops.workflow.workspace import Workspace

PASSED = [gate("data", True), gate("metric", True)]


def forget_and_retrain(ws: Workspace, request_id: str) -> tuple[list[object], list[ShardTrained]]:
    """The first half of a forget: receive, remove, retrain, record (as the flow does)."""
    batch = [request(request_id, shard_records(ws, 1, 2))]
    receive_requests(ws, batch)
    apply_batch(ws, batch)
    trained = [train_one_shard(ws, s) for s in ws.ensemble.stale_shards()]
    return batch, trained  # type: ignore[return-value]


def register(ws: Workspace, batch: list[object], trained: list[ShardTrained]) -> object:
    metrics = evaluate(ws)
    revision = record_revision(ws, "forget", batch)  # type: ignore[arg-type]
    mark_applied(ws, batch, revision)  # type: ignore[arg-type]
    return register_version(
        ws,
        kind="forget",
        requests=batch,  # type: ignore[arg-type]
        trained=trained,
        revision=revision,
        gates=PASSED,
        metrics=metrics,
        timings={"retraining": 1.5},
    )


def test_release_switches_are_tagged_once_under_the_unlearn_prefix(trained: Workspace) -> None:
    data = yaml.safe_load(trained.params_path.read_text())
    data["release"] = {"outputs": "top_k", "top_k": 2}
    trained.params_path.write_text(yaml.safe_dump(data))
    ws = open_with_fakes(trained.root)
    batch, retrained = forget_and_retrain(ws, "r1")
    register(ws, batch, retrained)
    tags = ws.registry().get_version("1").tags
    assert tags["unlearn.release.outputs"] == "top_k:2"
    assert not [k for k in tags if k.startswith("unlearn.unlearn.")]


def test_a_version_carries_its_provenance_and_the_workspace_points_at_it(
    trained: Workspace,
) -> None:
    batch, retrained = forget_and_retrain(trained, "r1")
    version = register(trained, batch, retrained)
    registry = trained.registry()
    assert isinstance(registry, InMemoryRegistry)
    info = registry.get_version("1")
    assert info == version
    assert info.request_ids == ["r1"]
    assert info.honoured_requests == ["r1"]
    assert info.tag("kind") == "forget"
    assert info.tag("git_sha") == trained.lineage().head()
    assert json.loads(info.tag("shards_retrained")) == [1]
    assert info.tag("records_forgotten") == "2"
    assert info.gates_passed
    assert "Forgets request r1: 2 records, shard 1 retrained" in info.description
    logged = registry.logged["1"]
    assert logged.model_files == ("ensemble", "params", "shard-000", "shard-001", "shard-002")
    assert logged.params["shards"] == 3
    # The example kept beside the model is no record: a row of zeros of the features' dtypes.
    columns = list(trained.ensemble.columns().feature_columns)
    assert list(logged.input_example.columns) == columns
    assert logged.input_example.to_numpy().tolist() == [[0] * len(columns)]
    assert logged.metrics["train_records"] == sum(
        len(trained.ensemble.read_shard(s)) for s in trained.ensemble.shard_ids
    )
    assert json.loads(trained.registry_path.read_text()) == {
        "git_sha": info.tag("git_sha"),
        "model_name": "workflow-test",
        "version": "1",
    }


def test_closing_promotes_and_records_served(trained: Workspace) -> None:
    batch, retrained = forget_and_retrain(trained, "r1")
    version = register(trained, batch, retrained)
    head = trained.lineage().head()
    assert promote_and_close(trained, batch, version, PASSED) == "1"  # type: ignore[arg-type]
    assert trained.registry().aliases() == {CHAMPION: "1"}
    assert trained.ledger.request("r1").state == "served"  # type: ignore[union-attr]
    assert trained.lineage().head() != head  # the outcome is committed
    assert trained.lineage().is_clean()


def test_a_failed_gate_registers_but_records_failed_and_keeps_the_champion(
    trained: Workspace,
) -> None:
    batch, retrained = forget_and_retrain(trained, "r1")
    version = register(trained, batch, retrained)
    with pytest.raises(GateFailedError, match="no champion was set"):
        promote_and_close(trained, batch, version, [gate("metric", False)])  # type: ignore[arg-type]
    state = trained.ledger.request("r1")
    assert state is not None
    assert state.state == "failed"
    assert trained.registry().aliases() == {}
    assert trained.lineage().is_clean()  # the failure is committed too


def test_a_crash_while_registering_is_completed_by_running_it_again(trained: Workspace) -> None:
    registry = InMemoryRegistry("workflow-test")
    crashing = open_with_fakes(
        trained.root, registry=fail_at(registry, "log_version"), lineage=trained.lineage()
    )
    batch, retrained = forget_and_retrain(crashing, "r1")
    with pytest.raises(InjectedCrashError):
        register(crashing, batch, retrained)
    assert registry.versions() == []
    assert not crashing.registry_path.exists()
    # The rerun: nothing is stale any more, and the registration completes.
    rerun = open_with_fakes(trained.root, registry=registry, lineage=trained.lineage())
    assert rerun.ensemble.stale_shards() == []
    version = register(rerun, batch, [])
    assert promote_and_close(rerun, batch, version, PASSED) == "1"  # type: ignore[arg-type]
    assert registry.get_version(CHAMPION).honoured_requests == ["r1"]

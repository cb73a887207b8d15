"""The train and forget flows end to end, against real MLflow (sqlite), git + DVC and Prefect."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect import flow

from pipelines.forget import forget_records
from pipelines.stages import forget_batch
from pipelines.train import train_ensemble
from unlearn_ops.adapters.dvc.lineage import changed_paths, is_clean, read_at_revision
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.errors import GateFailedError, InvalidRequestError, UnknownRecordsError
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.testing import InjectedCrashError, fail_at
from unlearn_ops.workflow.certification import certify_version
from unlearn_ops.workflow.workspace import Workspace


def shard_ids_in(root: Path, shard_id: int, count: int) -> list[str]:
    table = pd.read_parquet(root / "data" / "shards" / f"shard-{shard_id:03d}.parquet")
    return [str(r) for r in table["record_id"][:count]]


def training_ids_at(root: Path, rev: str, shards: int) -> set[str]:
    ids: set[str] = set()
    for shard_id in range(shards):
        data = read_at_revision(root, f"data/shards/shard-{shard_id:03d}.parquet", rev)
        ids.update(str(r) for r in pd.read_parquet(io.BytesIO(data))["record_id"])
    return ids


def request(request_id: str, record_ids: list[str]) -> dict[str, object]:
    return {"request_id": request_id, "record_ids": record_ids, "reason": "test"}


@pytest.mark.slow
def test_train_then_forget_end_to_end(workspace: Path) -> None:
    first = train_ensemble(str(workspace))
    assert first["version"] == "1"
    ws = Workspace.open(workspace)
    registry = ws.registry()
    before = registry.get_version("1")

    forgotten = shard_ids_in(workspace, 1, 2)
    result = forget_records(str(workspace), [request("req-one", forgotten)])
    assert result["version"] == "2"
    assert [r["shard_id"] for r in result["retrained"]] == [1]

    champion = registry.get_version("champion")
    assert champion.version == "2"
    assert champion.request_ids == ["req-one"]
    assert champion.honoured_requests == ["req-one"]
    assert champion.tag("parent_version") == "1"
    assert "Forgets request req-one: 2 records, shard 1 retrained" in champion.description
    assert registry.aliases() == {"champion": "2", "previous": "1"}

    # The champion's own training data (as of its git revision) holds no forgotten id.
    assert not set(forgotten) & training_ids_at(workspace, champion.tag("git_sha"), 3)
    assert set(forgotten) <= training_ids_at(workspace, before.tag("git_sha"), 3)
    # The previous version is unchanged, but for the tags that say it may never be served
    # again (it was trained on the forgotten records).
    after = registry.get_version("1")
    marks = {"unlearn.honours_all_deletions": "false", "unlearn.superseded_by_request": "req-one"}
    assert after.tags == {**before.tags, **marks}
    assert (after.description, after.run_id) == (before.description, before.run_id)
    # DVC lineage: the diff between the two revisions names only shard 1.
    changes = changed_paths(workspace, before.tag("git_sha"), champion.tag("git_sha"))
    assert changes["modified"] == ["data/shards/shard-001.parquet", "models/shard-001.pt"] or (
        "data/shards/shard-001.parquet" in changes["modified"]
        and not any("shard-000" in p or "shard-002" in p for p in changes["modified"])
    )
    tags = subprocess.run(
        ["git", "-C", str(workspace), "tag", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "unlearn/forget/req-one" in tags
    assert is_clean(workspace)
    assert certify_version(ws, "champion").passed
    assert registry.first_honouring("req-one").version == "2"  # type: ignore[union-attr]

    # The served model loads by alias and predicts on a DataFrame of features.
    model = registry.load_pyfunc("champion")
    assert registry.model_uri("champion") == "models:/flow-test@champion"
    holdout = ws.ensemble.read_holdout()
    features = holdout[list(ws.ensemble.columns().feature_columns)].head(7)
    predictions = model.predict(features)
    assert list(predictions["prediction"]) == list(ws.ensemble.predict(features.to_numpy()))

    # The same request again is a no-op that names the version.
    again = forget_records(str(workspace), [request("req-one", forgotten)])
    assert again == {
        "noop": True,
        "served_by": {"req-one": "2"},
        "message": "request req-one is honoured already by version 2",
    }
    assert len(registry.versions()) == 2
    # Another request for the same records is honoured by the same version, and says so.
    other = forget_records(str(workspace), [request("req-two", forgotten[:1])])
    assert other["served_by"] == {"req-two": "2"}
    assert registry.first_honouring("req-two").version == "2"  # type: ignore[union-attr]
    assert registry.get_version("1").honoured_requests == []


@pytest.mark.slow
def test_unknown_ids_and_replayed_request_change_nothing(workspace: Path) -> None:
    train_ensemble(str(workspace))
    head = subprocess.run(
        ["git", "-C", str(workspace), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    with pytest.raises(UnknownRecordsError, match="no-such-record"):
        forget_records(str(workspace), [request("req-bad", ["no-such-record"])])
    # A refused request leaves no trace: not even `received` in the ledger.
    assert Workspace.open(workspace).ledger.request("req-bad") is None
    real = shard_ids_in(workspace, 0, 1)
    forget_records(str(workspace), [request("req-a", real)])
    with pytest.raises(InvalidRequestError, match="received before with other records"):
        forget_records(str(workspace), [request("req-a", shard_ids_in(workspace, 2, 1))])
    assert len(Workspace.open(workspace).registry().versions()) == 2
    assert (
        head
        != subprocess.run(
            ["git", "-C", str(workspace), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout
    )
    assert is_clean(workspace)


@pytest.mark.slow
def test_failed_gate_registers_but_does_not_promote(workspace: Path, edit_params: Any) -> None:
    train_ensemble(str(workspace))
    edit_params(workspace, "gates", min_accuracy=0.999)
    ids = shard_ids_in(workspace, 0, 1)
    with pytest.raises(GateFailedError, match="champion stays at version 1") as caught:
        forget_records(str(workspace), [request("req-gate", ids)])
    assert "expect_column_mean_to_be_between on correct" in str(caught.value)
    ws = Workspace.open(workspace)
    registry = ws.registry()
    assert registry.alias_version("champion") == "1"
    failed = registry.get_version("2")
    assert not failed.gates_passed
    assert ws.ledger.request("req-gate").state == "failed"  # type: ignore[union-attr]
    assert registry.first_honouring("req-gate") is None  # never served

    # With the floor fixed, the same request completes: no retraining, a served version.
    edit_params(workspace, "gates", min_accuracy=0.5)
    result = forget_records(str(workspace), [request("req-gate", ids)])
    assert (result["version"], result["retrained"]) == ("3", [])
    assert registry.alias_version("champion") == "3"
    assert registry.first_honouring("req-gate").version == "3"  # type: ignore[union-attr]
    assert ws.ledger.request("req-gate").state == "served"  # type: ignore[union-attr]


@pytest.mark.slow
def test_crash_during_retraining_is_completed_by_a_rerun(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_ensemble(str(workspace))
    forgotten = shard_ids_in(workspace, 2, 3)
    original = SisaEnsemble.train_shard

    def crash(self: SisaEnsemble, shard_id: int, progress: object = None) -> object:
        raise RuntimeError("power cut during retraining")

    monkeypatch.setattr(SisaEnsemble, "train_shard", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        forget_records(str(workspace), [request("req-crash", forgotten)])
    ws = Workspace.open(workspace)
    registry = ws.registry()
    assert registry.alias_version("champion") == "1"
    assert ws.ensemble.stale_shards() == [2]

    monkeypatch.setattr(SisaEnsemble, "train_shard", original)
    result = forget_records(str(workspace), [request("req-crash", forgotten)])
    assert result["version"] == "2"
    assert [r["shard_id"] for r in result["retrained"]] == [2]
    assert registry.get_version("champion").request_ids == ["req-crash"]
    assert is_clean(workspace)
    assert certify_version(ws, "2", [2]).passed


def forget_on(ws: Workspace, requests: list[dict[str, object]]) -> dict[str, Any]:
    """The forget-records flow on an opened workspace (one whose ports may be injected)."""

    @flow(name="forget-records")
    def forget_records_on() -> dict[str, Any]:
        batch = [ForgetRequest.parse(r) for r in requests]
        with ws.lock():
            return forget_batch(ws, batch)

    result: dict[str, Any] = forget_records_on()
    return result


@pytest.mark.slow
def test_crashes_in_the_lineage_and_the_registry_are_completed_by_a_rerun(
    workspace: Path,
) -> None:
    train_ensemble(str(workspace))
    forgotten = shard_ids_in(workspace, 1, 2)
    ws = Workspace.open(workspace)
    registry = ws.registry()
    head = ws.lineage().head()

    # After retraining, before the data revision is committed.
    at_commit = Workspace.open(workspace, lineage=fail_at(ws.lineage(), "record_revision"))
    with pytest.raises(InjectedCrashError, match="record_revision"):
        forget_on(at_commit, [request("req-crash", forgotten)])
    assert ws.lineage().head() == head
    assert [v.version for v in registry.versions()] == ["1"]
    assert registry.alias_version("champion") == "1"
    assert ws.ensemble.stale_shards() == []  # retrained, not yet committed or registered

    # After the commit, while the version is logged.
    at_log = Workspace.open(workspace, registry=fail_at(registry, "log_version"))
    with pytest.raises(InjectedCrashError, match="log_version"):
        forget_on(at_log, [request("req-crash", forgotten)])
    assert ws.lineage().head() != head
    assert [v.version for v in registry.versions()] == ["1"]
    assert registry.alias_version("champion") == "1"
    assert ws.ledger.request("req-crash").state == "applied"  # type: ignore[union-attr]

    result = forget_records(str(workspace), [request("req-crash", forgotten)])
    assert (result["version"], result["retrained"]) == ("2", [])
    champion = registry.get_version("champion")
    assert champion.request_ids == ["req-crash"]
    assert not set(forgotten) & training_ids_at(workspace, champion.tag("git_sha"), 3)
    assert ws.ledger.request("req-crash").state == "served"  # type: ignore[union-attr]
    assert is_clean(workspace)


@pytest.mark.slow
def test_a_batch_retrains_each_affected_shard_once(workspace: Path) -> None:
    train_ensemble(str(workspace))
    batch = [
        request("req-b1", shard_ids_in(workspace, 0, 1)),
        request("req-b2", shard_ids_in(workspace, 0, 3)[1:] + shard_ids_in(workspace, 1, 1)),
    ]
    result = forget_records(str(workspace), batch)
    assert sorted(r["shard_id"] for r in result["retrained"]) == [0, 1]
    registry = Workspace.open(workspace).registry()
    champion = registry.get_version("champion")
    assert champion.request_ids == ["req-b1", "req-b2"]
    assert registry.first_honouring("req-b2").version == "2"  # type: ignore[union-attr]

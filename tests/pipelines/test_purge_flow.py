"""Purge end to end: retention window, deletion in every store, and a scan that finds nothing.

Real MLflow (sqlite + local artifacts), git + DVC and Prefect, as in test_flows.py.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from pipelines.forget import forget_records
from pipelines.purge import purge_deployment, purge_superseded
from pipelines.train import train_ensemble
from tests.conftest import CliRunner
from unlearn_ops.adapters.dvc.lineage import git_head, is_clean, read_at_revision
from unlearn_ops.compliance.scan import scan_workspace
from unlearn_ops.workflow.certification import certify_version
from unlearn_ops.workflow.workspace import Workspace


def first_ids(root: Path, shard_id: int, count: int) -> list[str]:
    table = pd.read_parquet(root / "data" / "shards" / f"shard-{shard_id:03d}.parquet")
    return [str(r) for r in table["record_id"][:count]]


def snapshot(root: Path) -> dict[str, str]:
    """Digest of every file of the workspace's stores (locks and DVC's tmp aside)."""
    skip = (".git", ".unlearn-ops", "tmp")
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not set(path.relative_to(root).parts[:2]) & set(skip)
    }


@pytest.mark.slow
def test_purge_after_the_window_leaves_no_forgotten_record_anywhere(
    workspace: Path, cli: CliRunner
) -> None:
    train_ensemble(str(workspace))
    forget_records(str(workspace), [{"request_id": "r1", "record_ids": first_ids(workspace, 1, 2)}])
    forget_records(str(workspace), [{"request_id": "r2", "record_ids": first_ids(workspace, 2, 1)}])
    ws = Workspace.open(workspace)
    registry = ws.registry()
    assert registry.aliases() == {"champion": "3", "previous": "2"}

    # Before the purge the old versions, DVC objects and checkpoints hold the records.
    before_scan = scan_workspace(ws)
    assert {f.store for f in before_scan.findings} == {
        "dvc-cache",
        "checkpoints",
        "mlflow-artifacts",
    }
    assert not before_scan.unverified
    # Shard weights are stored once (issue 15): 3 of version 1, then 1 per forget.
    blobs = registry.blob_store()  # type: ignore[attr-defined]
    assert len(blobs.digests()) == 3 + 1 + 1
    code, _out, _err = cli(["purge", "--scan", "-w", str(workspace)])
    assert code == 1

    # Inside the window a dry run lists what will go, and when, and deletes nothing.
    files, head = snapshot(workspace), git_head(workspace)
    code, out, _err = cli(["purge", "--dry-run", "--json", "-w", str(workspace)])
    assert code == 0
    dry = json.loads(out)
    fates = {f["version"]: f for f in dry["versions"]}
    assert (fates["1"]["action"], fates["2"]["action"], fates["3"]["action"]) == (
        "pending",
        "pending",
        "keep",
    )
    applied = ws.ledger.request("r1").applied  # type: ignore[union-attr]
    assert applied is not None
    due = datetime.fromisoformat(applied["at"]) + timedelta(days=30)
    assert datetime.fromisoformat(fates["1"]["due_at"]) == due.replace(microsecond=0)
    assert {r["request_id"]: r["status"] for r in dry["requests"]} == {
        "r1": "pending",
        "r2": "pending",
    }
    assert dry["delete"] == {
        "versions": [],
        "checkpoints": 0,
        "cache_objects": 0,
        "remote_objects": 0,
        "federation_folders": [],
    }
    assert snapshot(workspace) == files
    assert git_head(workspace) == head

    # Past the window the flow deletes every superseded version and object.
    later = (datetime.now(UTC) + timedelta(days=31)).isoformat()
    code, out, _err = cli(["purge", "--dry-run", "--now", later, "--json", "-w", str(workspace)])
    assert json.loads(out)["delete"]["versions"] == ["1", "2"]
    result = purge_superseded(str(workspace), now=later)
    assert result["executed"]["versions"] == ["1", "2"]
    assert result["executed"]["hard_deleted"]
    assert result["executed"]["checkpoints"] > 0
    assert result["executed"]["cache_objects"] > 0

    assert [v.version for v in registry.versions()] == ["3"]
    assert registry.aliases() == {"champion": "3"}
    model = registry.load_pyfunc("champion")
    features = ws.ensemble.read_holdout()[list(ws.ensemble.columns().feature_columns)].head(3)
    assert len(model.predict(features)) == 3

    # Only the blobs version 3 references are left: its two shared with older versions
    # (they hold no forgotten record) and its own retrained shard.
    assert blobs.digests() == set(registry.blob_references())  # type: ignore[attr-defined]
    assert len(blobs.digests()) == 3
    after = scan_workspace(ws)
    assert after.clean, after.findings
    assert not after.unverified
    assert after.files_scanned["dvc-cache"] > 0
    code, out, _err = cli(["purge", "--scan", "-w", str(workspace)])
    assert (code, out.strip().endswith("clean")) == (0, True)

    # A purged version is named as purged, not as unknown, wherever a user names it.
    for argv in (["show", "1"], ["verify", "2"], ["rollback", "--to", "1"]):
        code, _out, err = cli([*argv, "-w", str(workspace)])
        assert code == 2, err
        assert f"version {argv[-1]} of model " in err
        assert "was purged at" in err
        assert "a purged version never comes back" in err
    code, out, _err = cli(["versions", "--json", "-w", str(workspace)])
    listed = json.loads(out)
    assert [row["version"] for row in listed["versions"]] == ["3"]
    assert [(p["version"], p["requests"]) for p in listed["purged"]] == [
        ("1", ["r1", "r2"]),
        ("2", ["r2"]),
    ]
    code, out, _err = cli(["versions", "-w", str(workspace)])
    assert "purged: version(s) 1, 2, which held what requests asked to forget" in out

    states = ws.ledger.requests()
    assert states["r1"].state == states["r2"].state == "purged"
    assert states["r2"].purged is not None
    assert states["r2"].purged["versions"] == ["1", "2"]
    assert ws.ledger.verify_chain() == []
    assert is_clean(workspace)
    # The champion's data is still readable through DVC, and certifies (shard 1 was the
    # one whose older objects went).
    champion_sha = registry.get_version("champion").tag("git_sha")
    for shard_id in range(3):
        assert read_at_revision(
            workspace, f"data/shards/shard-{shard_id:03d}.parquet", champion_sha
        )
    assert certify_version(ws, "champion", [1]).passed

    # A second purge has nothing left to do.
    again = purge_superseded(str(workspace), now=later)
    assert again["executed"]["versions"] == []
    assert {r["status"] for r in again["requests"]} == {"purged"}


def test_purge_deployment_carries_the_schedule() -> None:
    deployment = purge_deployment("some-workspace", name="nightly", cron="0 3 * * *")
    assert deployment.name == "nightly"
    assert deployment.parameters == {"workspace": "some-workspace"}
    assert deployment.schedules[0].schedule.cron == "0 3 * * *"

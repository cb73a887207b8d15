"""The audit keeps a request's history through rollback, purge and a killed run (issue 11).

Finding 3: forget (v2), forget (v3), rollback to 1 by replay (v4), purge (v1, v2 deleted);
the audit of the first request must say what it said before the purge, field by field,
and name version 2 "purged on DATE". Finding 7: a forget killed with SIGKILL once a shard
model was rewritten, then run again: the rerun says it resumes, and the audit names
every shard retrained for the request, in both runs.

Real flows on a tiny workspace: MLflow on sqlite, git + DVC, Prefect's test server.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from pipelines.forget import forget_records
from pipelines.purge import purge_superseded
from pipelines.rollback import rollback_model
from pipelines.train import train_ensemble
from tests.pipelines.conftest import make_workspace
from unlearn_ops.compliance.audit import audit_request
from unlearn_ops.compliance.audit_text import describe_audit
from unlearn_ops.compliance.report import build_report
from unlearn_ops.sisa.sharding import SLICE_COLUMN, assign_shards
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from tests.conftest import CliRunner

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def first_ids(root: Path, shard_id: int, count: int) -> list[str]:
    table = pd.read_parquet(root / "data" / "shards" / f"shard-{shard_id:03d}.parquet")
    return [str(r) for r in table["record_id"][:count]]


def test_audit_says_the_same_after_rollback_and_purge(tmp_path: Path, cli: CliRunner) -> None:
    root = make_workspace(tmp_path / "ws")
    train_ensemble(str(root))
    forget_records(str(root), [{"request_id": "r1", "record_ids": first_ids(root, 1, 2)}])
    forget_records(str(root), [{"request_id": "r2", "record_ids": first_ids(root, 2, 1)}])
    rollback_model(str(root), to="1", replay=True)
    ws = Workspace.open(root)
    registry = ws.registry()
    assert registry.aliases()["champion"] == "4"
    now = datetime.now(UTC)
    before = audit_request(ws, "r1", now=now).to_dict()
    rows_before = {row.version: row.to_dict() for row in build_report(ws, now=now).versions}
    assert before["honoured"]["first_version"] == before["honoured"]["served_version"] == "2"
    assert before["applied"]["versions_made_for"] == ["2", "4"]
    assert "1" in before["applied"]["shards_retrained"]
    assert before["versions_purged"] == {}

    later = (now + timedelta(days=31)).isoformat()
    result = purge_superseded(str(root), now=later)
    assert result["executed"]["versions"] == ["1", "2"]
    assert [v.version for v in registry.versions()] == ["3", "4"]

    after_audit = audit_request(ws, "r1", now=now)
    after = after_audit.to_dict()
    purge_day = ws.ledger.request("r1").purged["at"][:10]  # type: ignore[union-attr]
    # What a purge changes: the state, the purge section, and the versions it deleted.
    assert (before["state"], after["state"]) == ("served", "purged")
    assert after["purge"]["purged"] is True
    assert after["versions_purged"] == {"2": after["versions_purged"]["2"]}
    assert after["versions_purged"]["2"].startswith(purge_day)
    # Everything else is a fact of the past: field by field, as before the purge.
    for section in sorted(set(before) - {"state", "purge", "versions_purged"}):
        assert after[section] == before[section], section
    assert after["purge"]["retention_until"] == before["purge"]["retention_until"]

    lines = describe_audit(after_audit)
    honoured = next(line for line in lines if line.startswith("honoured: "))
    assert honoured.startswith(f"honoured: first by version 2 (purged on {purge_day}) (registered ")
    assert "gates: data passed" in honoured
    applied = next(line for line in lines if line.startswith("applied: "))
    assert f"(version(s) 2 (purged on {purge_day}), 4)" in applied
    assert "shard 1 from slice" in applied
    assert f"exactness: cannot be run (version 2 was purged on {purge_day})" in lines

    # The report lists the purged versions from the ledger, and the chain still checks.
    report = build_report(ws, now=now)
    rows = {row.version: row for row in report.versions}
    assert sorted(rows) == ["1", "2", "3", "4"]
    assert (rows["1"].kind, rows["2"].kind) == ("train", "forget")
    assert rows["2"].request_ids == ("r1",)
    assert rows["2"].gates_passed is True
    assert rows["1"].purged_at is not None
    assert rows["2"].purged_at is not None
    assert rows["3"].purged_at is rows["4"].purged_at is None
    for number, row in rows.items():
        kept = {k: v for k, v in row.to_dict().items() if k not in ("aliases", "purged_at")}
        assert kept == {k: v for k, v in rows_before[number].items() if k in kept}, number
    r1 = next(a for a in report.requests if a.request_id == "r1")
    assert r1.first_honouring_version == "2"
    code, out, err = cli(["audit", "--check-chain", "-w", str(root)])
    assert code == 0, err
    assert out.startswith("ledger intact: ")
    code, _, err = cli(["report", "-w", str(root), "-o", str(tmp_path / "b.md")])
    assert code == 0, err
    markdown = (tmp_path / "b.md").read_text()
    assert "| 2 | forget | r1 | " in markdown
    assert f"| purged {purge_day} |" in markdown


def _model_digests(root: Path) -> dict[int, str]:
    """Digest of each shard's served-model record, written last when a shard is served."""
    return {
        shard_id: hashlib.sha256(
            (root / "models" / f"shard-{shard_id:03d}.json").read_bytes()
        ).hexdigest()
        for shard_id in range(3)
    }


def _kill_once_a_model_changes(
    argv: list[str], root: Path, env: dict[str, str], log: Path
) -> set[int]:
    """Run `argv`; SIGKILL it as soon as a shard's model is rewritten; the shards that were."""
    before = _model_digests(root)
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
        deadline = time.monotonic() + 300
        changed: set[int] = set()
        try:
            while not changed and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.005)
                changed = {s for s, d in _model_digests(root).items() if d != before[s]}
            assert process.poll() is None, log.read_text()
            assert changed, "no shard model was rewritten within 300 s"
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return {s for s, d in _model_digests(root).items() if d != before[s]}


def test_a_forget_killed_mid_retraining_is_resumed_and_fully_audited(
    tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL

    # More epochs, one shard at a time: the kill lands while a shard is still training.
    root = make_workspace(tmp_path / "ws", training={"epochs_per_stage": 30})
    monkeypatch.setenv("UNLEARN_OPS_MAX_PARALLEL_SHARDS", "1")
    train_ensemble(str(root))
    ws = Workspace.open(root)
    champion = ws.registry().alias_version("champion")
    # One record of slice 0 of each shard: every shard retrains all its stages.
    ids = []
    for shard_id in range(3):
        table = pd.read_parquet(root / "data" / "shards" / f"shard-{shard_id:03d}.parquet")
        ids.append(str(table[table[SLICE_COLUMN] == 0]["record_id"].iloc[0]))
    assert sorted(assign_shards(ids, 3, ws.params.sisa.salt).tolist()) == [0, 1, 2]
    argv = [sys.executable, "-m", "unlearn_ops.cli", "forget", "--ids", ",".join(ids)]
    argv += ["--request-id", "crash-2", "--no-progress", "-w", str(root)]
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }
    done = _kill_once_a_model_changes(argv, root, env, tmp_path / "killed.log")

    # The crash: champion as it was, ids forgotten, some shards retrained, others stale.
    ws = Workspace.open(root)
    assert ws.registry().alias_version("champion") == champion
    state = ws.ledger.request("crash-2")
    assert state is not None
    assert (state.state, state.planned_shards.keys()) == ("received", {0, 1, 2})
    stale = ws.ensemble.stale_shards()
    assert set(stale) == {0, 1, 2} - done

    # A dry run says the same and changes nothing.
    code, dry, err = cli([*argv[3:], "--dry-run"])
    assert code == 0, err
    assert ws.ensemble.stale_shards() == stale

    code, out, err = cli(argv[3:])
    assert code == 0, err
    lines = out.splitlines()
    assert dry.splitlines() == lines[:1]
    still = ", ".join(f"shard {s}" for s in stale) or "nothing"
    assert lines[0].startswith("resuming interrupted request crash-2 (received ")
    assert lines[0].endswith(
        f"shard(s) {', '.join(map(str, sorted(done)))} retrained then; still to retrain: {still}"
    )
    assert "forgotten before" not in out
    assert "no shard needs retraining" not in out
    assert lines[-1].startswith("request crash-2: version 2 is champion")

    ws = Workspace.open(root)
    version = ws.registry().get_version("2")
    assert set(json.loads(version.tag("shards_retrained"))) == set(stale)
    audit = audit_request(ws, "crash-2")
    assert (audit.state, audit.versions_made_for) == ("served", ("2",))
    assert audit.shards_retrained == {0: 0, 1: 0, 2: 0}
    applied = next(line for line in describe_audit(audit) if line.startswith("applied: "))
    assert "shard 0 from slice 0, shard 1 from slice 0, shard 2 from slice 0" in applied
    assert [e.event for e in ws.ledger.entries() if e.request_id == "crash-2"] == [
        "received",
        "applied",
        "served",
    ]
    assert ws.ledger.verify_chain() == []
    assert ws.ensemble.stale_shards() == []

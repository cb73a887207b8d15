"""Holds and approvals through the real flows: `forget-records` honours a hold, a named
approver's decision reaches the ledger and the version's tags (Prefect's test server, MLflow
on sqlite, git + DVC)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.forget import forget_records
from pipelines.intake import drain_inbox
from pipelines.train import train_ensemble
from tests.pipelines.approvals import answer_when_paused
from unlearn_ops.compliance.audit import audit_request
from unlearn_ops.deletion.envelope import sign_request
from unlearn_ops.deletion.holds import place_hold, release_hold
from unlearn_ops.deletion.receive import Accepted, receive
from unlearn_ops.workflow.workspace import Workspace

KEY = "holds-flow-test-signing-key"


@pytest.fixture
def trained(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", KEY)
    monkeypatch.setenv("UNLEARN_OPS_COALESCE_SECONDS", "0")
    monkeypatch.delenv("UNLEARN_OPS_APPROVAL_REQUIRED", raising=False)
    train_ensemble(str(workspace))
    return workspace


def shard_ids(root: Path, shard_id: int) -> list[str]:
    table = pd.read_parquet(root / "data" / "shards" / f"shard-{shard_id:03d}.parquet")
    return [str(r) for r in table["record_id"]]


@pytest.mark.slow
def test_the_forget_flow_holds_back_a_held_request_until_released(trained: Path) -> None:
    ws = Workspace.open(trained)
    records = shard_ids(trained, 0)
    hold = place_hold(ws, record_ids=[records[0]], reason="litigation 2026-17", actor="dpo")
    request = {"request_id": "held-1", "record_ids": records[:2], "reason": "GDPR art. 17"}

    answer = forget_records(str(trained), [request])
    assert answer["held"] == {"held-1": f"{hold.hold_id}: litigation 2026-17"}
    assert "version" not in answer
    assert [v.version for v in ws.registry().versions()] == ["1"]
    assert records[0] in shard_ids(trained, 0)  # nothing removed
    audit = audit_request(ws, "held-1")
    assert (audit.state, audit.deadline_status) == ("held", "paused")
    assert audit.paused_reason == f"{hold.hold_id}: litigation 2026-17"

    with ws.lock():
        done = release_hold(ws, hold.hold_id, reason="settled", actor="dpo")
    assert done.rerun == ["held-1"]
    answer = forget_records(str(trained), [request])
    assert answer["version"] == "2"
    assert ws.registry().get_version("champion").version == "2"
    assert not set(records[:2]) & set(shard_ids(trained, 0))
    audit = audit_request(ws, "held-1")
    assert (audit.state, audit.deadline_status, audit.paused_reason) == ("served", "met", None)
    assert audit.paused_days > 0
    assert audit.deadline > audit.requested_at + timedelta(days=30)  # the clock was paused
    assert forget_records(str(trained), [request])["noop"] is True  # exactly once


@pytest.mark.slow
def test_the_approvers_name_and_rule_reach_the_ledger_and_the_tags(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = yaml.safe_load((trained / "params.yaml").read_text())
    params["approval"] = {
        "rules": [{"name": "every forget", "when": {"min_records": 1}, "then": "ask"}]
    }
    (trained / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("UNLEARN_OPS_APPROVAL_TIMEOUT_SECONDS", "180")
    ws = Workspace.open(trained)
    body = {
        "request_id": "ask-1",
        "record_ids": shard_ids(trained, 1)[:1],
        "reason": "GDPR art. 17",
        "requested_at": "2026-11-20T09:30:00+00:00",
    }
    assert isinstance(receive(ws.inbox, sign_request(body, KEY), source="test"), Accepted)

    approver = answer_when_paused(
        {"approve": True, "reason": "small forget", "approver": "Dana DPO"}
    )
    result = drain_inbox(str(trained))
    approver.join()
    assert [b["requests"] for b in result["batches"]] == [["ask-1"]]
    [entry] = [e for e in ws.ledger.entries() if e.event == "approval"]
    assert (entry.request_id, entry.data["decision"]) == ("ask-1", "approved")
    assert (entry.data["rule"], entry.data["approver"]) == ("every forget", "Dana DPO")
    tags = ws.registry().get_version("2").tags
    assert tags["unlearn.approval.decision"] == "approved"
    assert tags["unlearn.approval.rule"] == "every forget"
    assert tags["unlearn.approval.approver"] == "Dana DPO"
    assert audit_request(ws, "ask-1").approvals[0]["approver"] == "Dana DPO"

"""A monolithic workspace end to end: provisional forget, exact retrain, the overdue alarm.

Real git + DVC workspaces, sqlite MLflow and Prefect's test server; digits, one MLP of 16
units trained 3 epochs (issue 14).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from pipelines.approximate import retrain_exactly
from pipelines.forget import forget_records
from pipelines.train import train_ensemble
from tests.pipelines.conftest import make_workspace, set_params
from unlearn_ops.compliance.audit import audit_request
from unlearn_ops.compliance.audit_text import describe_audit
from unlearn_ops.compliance.receipt import issue_receipt
from unlearn_ops.compliance.report import build_report, render_markdown
from unlearn_ops.errors import GateFailedError, ReceiptError, UnknownMethodError
from unlearn_ops.serving.versions import CHAMPION
from unlearn_ops.timestamps import parse_datetime
from unlearn_ops.workflow.approx_versions import pending_exact_requests
from unlearn_ops.workflow.workspace import Workspace

MONOLITHIC = {
    "sisa": {"shards": 1, "slices": 1},
    "training": {"mode": "monolithic", "epochs_per_stage": 3, "learning_rate": 0.01},
    "unlearning": {"method": "finetune", "options": {"epochs": 1}, "reference_models": 2},
}


def monolithic_workspace(root: Path) -> Path:
    return make_workspace(root, **MONOLITHIC)


def first_ids(root: Path, count: int) -> list[str]:
    table = pd.read_parquet(root / "data" / "shards" / "shard-000.parquet")
    return [str(v) for v in table["record_id"].head(count)]


def request(request_id: str, record_ids: list[str]) -> dict[str, object]:
    return {"request_id": request_id, "record_ids": record_ids, "reason": "test"}


@pytest.mark.slow
def test_provisional_then_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNLEARN_OPS_RECEIPT_SIGNING_KEY", "receipt-key-for-tests-0123456789")
    root = monolithic_workspace(tmp_path / "ws")
    assert train_ensemble(str(root))["version"] == "1"
    forgotten = first_ids(root, 40)

    result = forget_records(str(root), [request("req-a", forgotten)])
    assert result["provisional"] is True
    assert result["method"] == "finetune"
    assert result["gates"]["privacy"] is True  # the audit ran against 2 oracles
    ws = Workspace.open(root)
    registry = ws.registry()
    provisional = registry.get_version(CHAMPION)
    assert provisional.version == "2"
    assert provisional.tag("exact") == "false"
    assert provisional.tag("provisional") == "true"
    assert provisional.tag("method") == "finetune"
    assert provisional.tag("approximate_requests") == '["req-a"]'
    assert "40 records, forgotten approximately by finetune, no retraining" in str(
        provisional.description
    )
    assert provisional.tag("privacy.verdict") in {"pass", "inconclusive"}
    state = ws.ledger.request("req-a")
    assert state is not None
    assert state.display_state == "served (approximate)"
    assert pending_exact_requests(ws) == ["req-a"]
    audit = audit_request(ws, "req-a")
    assert audit.state == "served (approximate)"
    assert audit.deadline_status == "pending"
    assert audit.approximate is not None
    assert audit.approximate["version"] == "2"
    assert any("APPROXIMATELY by provisional version 2" in line for line in describe_audit(audit))
    assert audit.first_exact_version is None
    with pytest.raises(ReceiptError, match="served only approximately so far"):
        issue_receipt(ws, "req-a")
    # The shard stays stale: the exact retrain is its ordinary training.
    assert ws.ensemble.stale_shards() == [0]

    exact = retrain_exactly(str(root))
    assert exact["version"] == "3"
    assert exact["requests"] == ["req-a"]
    ws = Workspace.open(root)
    registry = ws.registry()
    assert registry.alias_version(CHAMPION) == "3"
    assert registry.get_version("3").tag("exact") == "true"
    assert "shard 0 retrained from slice 0" in str(registry.get_version("3").description)
    assert registry.get_version("2").tag("superseded_by") == "3"
    assert pending_exact_requests(ws) == []
    assert ws.ensemble.stale_shards() == []
    audit = audit_request(ws, "req-a")
    assert audit.state == "served"
    assert audit.deadline_status == "met"
    assert audit.served_version == "3"
    assert audit.approximate is None
    # The exact version is the one certified and named on the receipt, not the provisional.
    certified = audit_request(ws, "req-a", certify=True)
    assert (certified.first_honouring_version, certified.first_exact_version) == ("2", "3")
    assert certified.exactness is True
    assert issue_receipt(ws, "req-a")["receipt"]["first_version"] == "3"
    # The superseded provisional version holds traces of the records: purge takes it later.
    from unlearn_ops.compliance.purge import plan_purge

    now = parse_datetime(ws.ledger.request("req-a").received_at)  # type: ignore[union-attr]
    fates = {f.version: f.action for f in plan_purge(ws, now + timedelta(days=400)).versions}
    assert fates == {"1": "delete", "2": "delete", "3": "keep"}
    assert {f.version: f.action for f in plan_purge(ws, now).versions}["2"] == "pending"
    # Nothing waits: a second run changes nothing.
    assert retrain_exactly(str(root))["noop"] is True


@pytest.mark.slow
def test_overdue_when_the_exact_retrain_fails(tmp_path: Path) -> None:
    root = monolithic_workspace(tmp_path / "ws")
    train_ensemble(str(root))
    forget_records(str(root), [request("req-late", first_ids(root, 30))])
    # The retrain cannot pass its gates: it is registered, not served, and the run fails.
    set_params(root, "gates", min_accuracy=0.999)
    state = retrain_exactly(str(root), return_state=True)
    assert state.is_failed()
    with pytest.raises(GateFailedError):
        state.result()

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state is not None
    assert run.state.is_failed()

    ws = Workspace.open(root)
    assert ws.registry().alias_version(CHAMPION) == "2"  # the provisional one still serves
    received = ws.ledger.request("req-late")
    assert received is not None
    later = parse_datetime(received.received_at) + timedelta(days=31)
    audit = audit_request(ws, "req-late", now=later)
    assert audit.deadline_status == "missed"
    assert audit.overdue
    text = "\n".join(describe_audit(audit))
    assert "OVERDUE" in text
    assert "exact retrain: " in text  # the failed run is in the ledger
    assert audit.to_dict()["approximate"]["overdue"] is True
    report = build_report(ws, now=later)
    assert report.counts()["missed"] == 1
    markdown = render_markdown(report, "timeline.png")
    assert "OVERDUE: served approximately by version 2, no exact retrain" in markdown
    # Before the deadline the same request is pending, not overdue.
    assert not audit_request(ws, "req-late", now=later - timedelta(days=2)).overdue


@pytest.mark.slow
def test_unknown_method_changes_nothing(tmp_path: Path) -> None:
    root = monolithic_workspace(tmp_path / "ws")
    train_ensemble(str(root))
    set_params(root, "unlearning", method="no-such-method")
    before = (root / "ledger.jsonl").read_text() if (root / "ledger.jsonl").exists() else ""
    with pytest.raises(UnknownMethodError, match="no-such-method"):
        forget_records(str(root), [request("req-x", first_ids(root, 5))])
    after = (root / "ledger.jsonl").read_text() if (root / "ledger.jsonl").exists() else ""
    assert after == before
    assert Workspace.open(root).ensemble.forgotten_hashes() == set()


def test_the_exact_retrain_deployment_runs_on_an_interval(tmp_path: Path) -> None:
    from pipelines.approximate import exact_retrain_deployment

    deployment = exact_retrain_deployment(str(tmp_path), interval_seconds=3600.0)
    assert deployment.flow_name == "retrain-exactly"
    assert deployment.parameters == {"workspace": str(tmp_path)}
    assert [s.schedule.interval.total_seconds() for s in deployment.schedules] == [3600.0]

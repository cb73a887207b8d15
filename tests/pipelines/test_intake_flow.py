"""The inbox drain: signed requests -> inbox -> one forget per burst, exactly once, resumable."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipelines import stages
from pipelines.intake import drain_inbox, forget_on_deletion_event
from pipelines.train import train_ensemble
from tests.pipelines.approvals import answer_when_paused
from unlearn_ops.deletion.envelope import sign_request
from unlearn_ops.deletion.receive import Accepted, Duplicate, Refused, Replayed, receive
from unlearn_ops.workflow.workspace import Workspace

KEY = "intake-flow-test-signing-key"


@pytest.fixture(autouse=True)
def signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", KEY)
    monkeypatch.setenv("UNLEARN_OPS_COALESCE_SECONDS", "0")


@pytest.fixture
def trained(workspace: Path) -> Path:
    train_ensemble(str(workspace))
    return workspace


def shard_ids(root: Path, shard_id: int) -> list[str]:
    table = pd.read_parquet(root / "data" / "shards" / f"shard-{shard_id:03d}.parquet")
    return [str(r) for r in table["record_id"]]


def envelope(request_id: str, record_ids: list[str], key: str = KEY, **extra: Any) -> dict:
    body = {
        "request_id": request_id,
        "record_ids": record_ids,
        "reason": "GDPR art. 17",
        "requested_at": "2026-11-20T09:30:00+00:00",
        **extra,
    }
    return sign_request(body, key)


def ledger_events(ws: Workspace, request_id: str) -> list[str]:
    return [e.event for e in ws.ledger.entries() if e.request_id == request_id]


@pytest.mark.slow
def test_drain_forgets_a_burst_once_and_refuses_the_bad(trained: Path) -> None:
    ws = Workspace.open(trained)
    in_shard_0, in_shard_1 = shard_ids(trained, 0), shard_ids(trained, 1)
    good = [
        envelope("dsr-1", in_shard_0[:2]),
        envelope("dsr-2", in_shard_0[2:3]),
        envelope("dsr-3", in_shard_1[:1]),
    ]
    results = [receive(ws.inbox, e, source="test") for e in good]
    assert results == [Accepted("dsr-1"), Accepted("dsr-2"), Accepted("dsr-3")]
    assert receive(ws.inbox, good[0], source="test-again") == Duplicate("dsr-1", "pending")
    forged = receive(ws.inbox, envelope("dsr-4", in_shard_0[3:4], key="not-the-key"), source="t")
    assert isinstance(forged, Refused)
    assert (forged.kind, forged.request_id) == ("forged", "dsr-4")
    changed = receive(ws.inbox, envelope("dsr-1", in_shard_0[5:6]), source="test")
    assert isinstance(changed, Replayed)
    assert changed.kind == "replayed-with-changes"
    assert isinstance(receive(ws.inbox, envelope("dsr-5", ["no-such"]), source="t"), Accepted)

    result = drain_inbox(str(trained))

    assert len(result["batches"]) == 1  # one retraining run for the whole burst
    batch = result["batches"][0]
    assert sorted(r["shard_id"] for r in batch["retrained"]) == [0, 1]
    assert sorted(batch["requests"]) == ["dsr-1", "dsr-2", "dsr-3"]
    assert result["failed"] == {"dsr-5": "1 of 1 records were never in the training data"}
    champion = ws.registry().get_version("champion")
    assert champion.version == "2"
    assert sorted(champion.request_ids) == ["dsr-1", "dsr-2", "dsr-3"]
    for request_id in ("dsr-1", "dsr-2", "dsr-3"):
        assert ledger_events(ws, request_id) == ["received", "applied", "served"]
        assert ws.inbox.get(request_id).state == "done"
    assert ledger_events(ws, "dsr-4") == []  # forged: never acted on, never in the ledger
    assert ledger_events(ws, "dsr-5") == ["failed"]
    forgotten = set(in_shard_0[:3] + in_shard_1[:1])
    assert not forgotten & (set(shard_ids(trained, 0)) | set(shard_ids(trained, 1)))
    assert in_shard_0[5] in shard_ids(trained, 0)  # the replay's record stays
    # Nothing of a record id in the inbox or ledger: keyed hashes only.
    stored = (trained / ".unlearn-ops" / "inbox.sqlite").read_bytes() + (
        trained / "ledger.jsonl"
    ).read_bytes()
    assert not any(f'"{r}"'.encode() in stored for r in forgotten)
    assert {r.kind for r in ws.inbox.rejections()} == {"forged", "replayed-with-changes"}

    # A new request for records forgotten already: the inbox holds their keyed hashes only,
    # the data no longer holds them, and the version that forgot them serves it.
    assert isinstance(receive(ws.inbox, envelope("dsr-6", in_shard_0[:2]), source="test"), Accepted)
    served = drain_inbox(str(trained))
    assert [b.get("noop") for b in served["batches"]] == [True]
    assert ws.inbox.get("dsr-6").outcome["version"] == "2"
    assert ledger_events(ws, "dsr-6") == ["received", "served"]
    assert "dsr-6" in ws.registry().get_version("champion").honoured_requests

    # Delivered again later: a duplicate, and a drain then has nothing to do.
    assert receive(ws.inbox, good[1], source="redelivery") == Duplicate("dsr-2", "done")
    again = drain_inbox(str(trained))
    assert again["batches"] == []
    assert ws.registry().get_version("champion").version == "2"


@pytest.mark.slow
def test_a_drain_that_crashed_is_finished_by_the_next(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.open(trained)
    records = shard_ids(trained, 2)[:2]
    assert isinstance(receive(ws.inbox, envelope("crash-1", records), source="test"), Accepted)
    real = stages.retrain_and_register

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("power cut during retraining")

    monkeypatch.setattr(stages, "retrain_and_register", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        drain_inbox(str(trained))
    assert ws.inbox.get("crash-1").state == "processing"  # claimed, not finished
    assert ledger_events(ws, "crash-1") == ["received"]

    monkeypatch.setattr(stages, "retrain_and_register", real)
    result = drain_inbox(str(trained))
    assert [b["requests"] for b in result["batches"]] == [["crash-1"]]
    assert ws.inbox.get("crash-1").state == "done"
    assert ws.inbox.get("crash-1").attempts == 2
    assert ledger_events(ws, "crash-1") == ["received", "applied", "served"]
    champion = ws.registry().get_version("champion")
    assert champion.request_ids == ["crash-1"]
    assert [v.version for v in ws.registry().versions()] == ["1", "2"]


@pytest.mark.slow
def test_a_subject_request_forgets_the_subjects_records(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    from unlearn_ops.adapters.dvc.lineage import init_repository
    from unlearn_ops.params import Params
    from unlearn_ops.workflow.workspace import write_workspace_files

    digits = load_digits()
    frame = pd.DataFrame(digits.data[:600], columns=[f"p{i}" for i in range(64)])
    frame.insert(0, "record_id", [f"r{i}" for i in range(600)])
    frame["label"] = digits.target[:600]
    frame["customer"] = [f"c{i // 4}" for i in range(600)]
    frame.to_csv(tmp_path / "people.csv", index=False)
    root = tmp_path / "ws"
    params = Params.from_mapping(
        {
            "dataset": {"source": str(tmp_path / "people.csv"), "subject_column": "customer"},
            "sisa": {"shards": 3, "slices": 2},
            "model": {"name": "mlp", "hidden_sizes": [16]},
            "training": {"epochs_per_stage": 3, "learning_rate": 0.01},
            # 480 records: noisy, per class even more (the fairness gate has its own test).
            "gates": {
                "min_accuracy": 0.5,
                "max_accuracy_drop": 0.5,
                "fairness": {"enabled": False},
            },
            "registry": {"model_name": "subject-test"},
        }
    )
    write_workspace_files(root, params)
    init_repository(root)
    train_ensemble(str(root))
    ws = Workspace.open(root)
    index = json.loads((root / "subjects.json").read_text())["subjects"]
    assert len(index) == 150
    assert '"c7"' not in json.dumps(index)
    body = sign_request(
        {
            "request_id": "subject-c7",
            "subject_id": "c7",
            "reason": "CCPA deletion",
            "requested_at": "2026-11-20T09:30:00+00:00",
        },
        KEY,
    )
    assert isinstance(receive(ws.inbox, body, source="test"), Accepted)
    result = drain_inbox(str(root))
    assert [b["requests"] for b in result["batches"]] == [["subject-c7"]]
    remaining = set()
    for shard in range(3):
        remaining |= set(shard_ids(root, shard))
    assert not {"r28", "r29", "r30", "r31"} & remaining
    holdout = set(ws.ensemble.read_holdout()["record_id"].astype(str))
    assert "r32" in remaining | holdout


@pytest.mark.slow
def test_approval_gates_the_retraining(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.open(trained)
    records = shard_ids(trained, 1)
    assert isinstance(receive(ws.inbox, envelope("ask-1", records[:1]), source="test"), Accepted)

    monkeypatch.setenv("UNLEARN_OPS_APPROVAL_TIMEOUT_SECONDS", "180")  # never hang the suite

    out: dict[str, Any] = {}
    rejecter = answer_when_paused({"approve": False, "reason": "legal hold"}, out)
    result = drain_inbox(str(trained), require_approval=True)
    rejecter.join()
    assert "**Forget 1 records** for 1 request(s): ask-1." in out["form"]
    assert "Shards to retrain: [1]" in out["form"]
    assert "Expected accuracy change: unknown (no forget version yet)" in out["form"]
    assert "Asked by the rule: " in out["form"]  # the form says which rule asked
    assert result["batches"] == []
    assert result["failed"] == {"ask-1": "rejected by the approver: legal hold"}
    assert ledger_events(ws, "ask-1") == ["failed"]
    assert [v.version for v in ws.registry().versions()] == ["1"]
    assert records[0] in shard_ids(trained, 1)  # nothing changed

    assert isinstance(receive(ws.inbox, envelope("ask-2", records[1:2]), source="test"), Accepted)
    approver = answer_when_paused({"approve": True})
    result = drain_inbox(str(trained), require_approval=True)
    approver.join()
    assert [b["requests"] for b in result["batches"]] == [["ask-2"]]
    assert ws.registry().get_version("champion").version == "2"


@pytest.mark.slow
def test_the_listener_drains_what_the_http_intake_took_in(
    trained: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.request

    from unlearn_ops.adapters.http.intake import HttpIntake
    from unlearn_ops.deletion.listener import listen

    monkeypatch.setenv("UNLEARN_OPS_REQUEST_BEARER_TOKEN", "http-test-token")
    ws = Workspace.open(trained)
    records = shard_ids(trained, 2)
    arrived = threading.Event()
    with HttpIntake(ws.inbox, ws.settings, on_accepted=lambda _: arrived.set()) as server:

        def post(body: dict[str, Any], token: str | None = None) -> int:
            request = urllib.request.Request(
                f"{server.url}/v1/deletion-requests", data=json.dumps(body).encode()
            )
            request.add_header("Content-Type", "application/json")
            if token:
                request.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        assert post(envelope("http-1", records[:1])) == 202
        unsigned = {k: v for k, v in envelope("http-2", records[1:2]).items() if k != "signature"}
        assert post(unsigned, token="http-test-token") == 202
        assert post(unsigned, token="wrong") == 401
        assert post(envelope("http-1", records[:1])) == 200  # a duplicate
        report = listen(ws, arrived=arrived, drain=lambda: drain_inbox(str(trained)), once=True)
    assert report.drains == 1
    assert report.batches == 1
    assert ws.inbox.get("http-2").authenticated_by == "bearer"
    champion = ws.registry().get_version("champion")
    assert sorted(champion.request_ids) == ["http-1", "http-2"]


@pytest.mark.slow
def test_the_event_flow_records_its_own_request_then_drains(trained: Path) -> None:
    """The deployment's flow, run directly (no deployment: nothing queued to coalesce)."""
    records = shard_ids(trained, 2)
    event = envelope("evt-1", records[:1])

    result = forget_on_deletion_event(
        str(trained), envelope=event, delivery_id="prefect-event:e-1", window_seconds=0
    )
    assert (result["event"], result["coalesced_runs"]) == ("new", 0)
    assert [b["requests"] for b in result["batches"]] == [["evt-1"]]
    ws = Workspace.open(trained)
    assert ws.inbox.get("evt-1").source == "prefect-event:e-1"

    again = forget_on_deletion_event(
        str(trained), envelope=event, delivery_id="prefect-event:e-1", window_seconds=0
    )
    assert (again["event"], again["batches"]) == ("duplicate", [])
    forged = forget_on_deletion_event(
        str(trained), envelope=envelope("evt-2", records[1:2], key="not-the-key"), window_seconds=0
    )
    assert (forged["event"], forged["batches"]) == ("rejected:forged", [])
    assert ws.registry().get_version("champion").request_ids == ["evt-1"]

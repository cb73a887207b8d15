"""Approval rules of params.yaml: a strict schema, first match wins, each rule pauses or passes.

The rules are checked twice: pure (:func:`decide_approval` on summaries made up to sit on
each side of each limit) and through the drain, on a real workspace (init + prepare, real
inbox and ledger) with an in-memory registry and a forget seam that records its batches.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RecordingForget, arrive, shard_record_ids
from unlearn_ops.deletion.approval import ALWAYS_ASK, Decision, decide_approval
from unlearn_ops.deletion.drain import drain
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.errors import ConfigError
from unlearn_ops.params import ApprovalParams, Params
from unlearn_ops.testing import InMemoryRegistry
from unlearn_ops.testing.registry import LoggedVersion
from unlearn_ops.workflow.workspace import Workspace


def rules(*items: dict[str, Any], default: str = "ask") -> ApprovalParams:
    return ApprovalParams.model_validate({"rules": list(items), "default": default})


def summary(records: int = 1, share: float = 0.1, change: float | None = -0.001) -> dict[str, Any]:
    return {"records": records, "retraining_fraction": share, "expected_accuracy_change": change}


# ------------------------------------------------------------------ the schema
@pytest.mark.parametrize(
    ("approval", "problem"),
    [
        ({"rules": [{"when": {}, "then": "auto"}]}, "names no condition"),
        ({"rules": [{"when": {"max_records": 5}, "then": "maybe"}]}, "then"),
        ({"rules": [{"when": {"max_shards": 2}, "then": "ask"}]}, "max_shards"),
        ({"rules": [{"when": {"max_retrain_share": 1.5}, "then": "ask"}]}, "max_retrain_share"),
        ({"rules": [{"when": {"reasons": []}, "then": "ask"}]}, "reasons"),
        ({"default": "never"}, "default"),
        ({"rule": []}, "rule"),
    ],
)
def test_the_schema_is_strict(approval: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Params.from_mapping({"approval": approval})


def test_no_rules_keep_the_old_behaviour() -> None:
    assert Params().approval == ApprovalParams(rules=(), default="auto")
    assert decide_approval(ApprovalParams(), summary(), []) == Decision("auto", "default")


# ------------------------------------------------------------------ each rule, pure
@pytest.mark.parametrize(
    ("when", "passing", "pausing"),
    [
        ({"max_retrain_share": 0.25}, summary(share=0.25), summary(share=0.26)),
        ({"max_accuracy_change": 0.01}, summary(change=-0.01), summary(change=-0.0101)),
        ({"max_accuracy_change": 0.01}, summary(change=0.05), summary(change=None)),
        ({"max_records": 10}, summary(records=10), summary(records=11)),
    ],
)
def test_an_auto_rule_passes_within_its_limits_and_not_beyond(
    when: dict[str, Any], passing: dict[str, Any], pausing: dict[str, Any]
) -> None:
    params = rules({"name": "small", "when": when, "then": "auto"})
    assert decide_approval(params, passing, []) == Decision("auto", "small")
    assert decide_approval(params, pausing, []) == Decision("ask", "default")


def test_an_auto_rule_needs_every_condition() -> None:
    params = rules(
        {"when": {"max_retrain_share": 0.25, "max_accuracy_change": 0.01}, "then": "auto"}
    )
    assert decide_approval(params, summary(share=0.2, change=-0.005), []).action == "auto"
    assert decide_approval(params, summary(share=0.3, change=-0.005), []).action == "ask"
    assert decide_approval(params, summary(share=0.2, change=-0.02), []).action == "ask"


@pytest.mark.parametrize(
    ("when", "reasons", "asks"),
    [
        ({"min_records": 100}, [], False),
        ({"reasons": ["litigation", "court order"]}, ["court order"], True),
        ({"reasons": ["litigation"]}, ["GDPR art. 17"], False),
    ],
)
def test_an_ask_rule_pauses_as_written(
    when: dict[str, Any], reasons: list[str], asks: bool
) -> None:
    params = rules({"name": "big", "when": when, "then": "ask"}, default="auto")
    assert decide_approval(params, summary(records=99), reasons) == (
        Decision("ask", "big") if asks else Decision("auto", "default")
    )
    if "min_records" in when:
        assert decide_approval(params, summary(records=100), reasons) == Decision("ask", "big")


def test_the_first_matching_rule_wins() -> None:
    params = rules(
        {"when": {"min_records": 100}, "then": "ask"},
        {"when": {"max_retrain_share": 0.5}, "then": "auto"},
        default="ask",
    )
    assert decide_approval(params, summary(records=100, share=0.1), []) == Decision("ask", "rule 1")
    assert decide_approval(params, summary(records=5, share=0.1), []) == Decision("auto", "rule 2")


def test_the_environment_switch_still_means_always_ask() -> None:
    params = rules({"when": {"max_records": 10}, "then": "auto"}, default="auto")
    assert decide_approval(params, summary(), [], forced=True) == Decision("ask", ALWAYS_ASK)


# ------------------------------------------------------------------ through the drain
@pytest.fixture
def root(prepared_workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("UNLEARN_OPS_APPROVAL_REQUIRED", raising=False)
    return prepared_workspace.root


def with_rules(root: Path, approval: dict[str, Any]) -> Workspace:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["approval"] = approval
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return Workspace.open(root, registry=InMemoryRegistry())


class Registers(RecordingForget):
    """A forget seam that records its batches and registers an (empty) version for each."""

    def __call__(self, ws: Workspace, batch: Sequence[ForgetRequest]) -> dict[str, Any]:
        super().__call__(ws, batch)
        registry = ws.registry()
        assert isinstance(registry, InMemoryRegistry)
        number = str(len(registry.logged) + 1)
        registry.logged[number] = LoggedVersion(
            run_id="r", model_id="m", created_at=int(time.time() * 1000), description="",
            tags={}, params={}, metrics={}, model_files=(), model_bytes={},
        )  # fmt: skip
        return {"version": number, "requests": self.batches[-1]}


class Approver:
    def __init__(self, answer: tuple[bool, str, str]) -> None:
        self.answer = answer
        self.asked: list[list[str]] = []
        self.forms: list[str] = []

    def __call__(
        self, ws: Workspace, summary: Mapping[str, Any], form: str
    ) -> tuple[bool, str, str]:
        self.asked.append(list(summary["requests"]))
        self.forms.append(form)
        return self.answer


def approvals(ws: Workspace, request_id: str) -> list[dict[str, Any]]:
    return [
        e.data for e in ws.ledger.entries() if e.request_id == request_id and e.event == "approval"
    ]


@pytest.mark.parametrize(("limit", "asked"), [(0.9, False), (0.01, True)])
def test_a_retrain_share_rule_passes_or_pauses_in_the_drain(
    root: Path, limit: float, asked: bool
) -> None:
    ws = with_rules(
        root,
        {"rules": [{"name": "small", "when": {"max_retrain_share": limit}, "then": "auto"}]}
        | {"default": "ask"},
    )
    arrive(ws, "r1", shard_record_ids(ws, 0)[:1])
    person = Approver((True, "fine", "Dana DPO"))
    forgets = Registers()
    drain(ws, forgets, approver=person)
    assert forgets.batches == [["r1"]]
    assert person.asked == ([["r1"]] if asked else [])
    [entry] = approvals(ws, "r1")
    expected = ("approved", "default", "Dana DPO") if asked else ("auto", "small", None)
    assert (entry["decision"], entry["rule"], entry["approver"]) == expected
    tags = ws.registry().get_version("1").tags
    assert tags["unlearn.approval.decision"] == expected[0]
    assert tags["unlearn.approval.rule"] == expected[1]
    assert tags["unlearn.approval.approver"] == (expected[2] or "-")


def test_a_reason_rule_asks_and_a_rejection_changes_nothing(root: Path) -> None:
    ws = with_rules(
        root,
        {"rules": [{"name": "court", "when": {"reasons": ["court order"]}, "then": "ask"}]},
    )
    arrive(ws, "r-court", shard_record_ids(ws, 1)[:1], reason="court order")
    before = {p.name: p.read_bytes() for p in (ws.root / "data" / "shards").iterdir()}
    person = Approver((False, "order under appeal", "Dana DPO"))
    forgets = Registers()
    result = drain(ws, forgets, approver=person)
    assert person.asked == [["r-court"]]
    assert forgets.batches == []
    assert result["failed"] == {"r-court": "rejected by Dana DPO: order under appeal"}
    [failed] = [e for e in ws.ledger.entries() if e.request_id == "r-court"]
    assert failed.event == "failed"
    assert failed.data["approval"] == {
        "decision": "rejected",
        "rule": "court",
        "approver": "Dana DPO",
        "reason": "order under appeal",
    }
    assert before == {p.name: p.read_bytes() for p in (ws.root / "data" / "shards").iterdir()}
    assert ws.registry().versions() == []
    assert ws.inbox.get("r-court").state == "failed"  # type: ignore[union-attr]

    arrive(ws, "r-plain", shard_record_ids(ws, 1)[1:2])  # another reason: the default, auto
    drain(ws, forgets, approver=person)
    assert forgets.batches == [["r-plain"]]
    assert person.asked == [["r-court"]]


def test_a_min_records_rule_asks_for_big_batches_only(root: Path) -> None:
    ws = with_rules(root, {"rules": [{"when": {"min_records": 3}, "then": "ask"}]})
    person = Approver((True, "", "Ola"))
    forgets = Registers()
    arrive(ws, "small", shard_record_ids(ws, 0)[:2])
    drain(ws, forgets, approver=person)
    assert person.asked == []
    arrive(ws, "big", shard_record_ids(ws, 0)[2:5])
    drain(ws, forgets, approver=person)
    assert person.asked == [["big"]]
    assert approvals(ws, "big")[0]["rule"] == "rule 1"
    assert forgets.batches == [["small"], ["big"]]


def test_rules_that_may_ask_need_an_approver(root: Path) -> None:
    ws = with_rules(root, {"rules": [{"when": {"min_records": 3}, "then": "ask"}]})
    with pytest.raises(ConfigError, match="approval is required"):
        drain(ws, Registers())


def test_a_request_approved_before_it_is_received_is_received_as_new(root: Path) -> None:
    from unlearn_ops.deletion.approval import record_approval
    from unlearn_ops.workflow.batch import receive_requests

    ws = with_rules(root, {})
    request = ForgetRequest.build(shard_record_ids(ws, 0)[:1], "first-approved", "GDPR")
    record_approval(ws, ["first-approved"], Decision("ask", "rule 1"), summary(), approver="Ola")
    receive_requests(ws, [request])  # the forget pipeline receives it after the approval
    events = [e.event for e in ws.ledger.entries() if e.request_id == "first-approved"]
    assert events == ["approval", "received"]
    assert ws.ledger.requests()["first-approved"].approvals[0]["approver"] == "Ola"


def withdrawal(share: float | None = 0.25) -> dict[str, Any]:
    return {
        "records": None,
        "withdrawal": True,
        "retraining_fraction": share,
        "expected_accuracy_change": None,
    }


@pytest.mark.parametrize(
    ("when", "record_batch", "client"),
    [
        ({"withdrawal": True}, "auto", "ask"),
        ({"withdrawal": False}, "ask", "auto"),
        ({"max_records": 10}, "ask", "auto"),  # a withdrawal names no record
        ({"min_records": 1}, "ask", "auto"),
        ({"max_retrain_share": 0.3}, "ask", "ask"),
        ({"reasons": ["poisoning"]}, "ask", "ask"),
    ],
)
def test_a_withdrawal_is_decided_by_the_rules_that_can_speak_of_it(
    when: dict[str, Any], record_batch: str, client: str
) -> None:
    params = rules({"name": "r", "when": when, "then": "ask"}, default="auto")
    assert decide_approval(params, summary(share=0.25), ["poisoning"]).action == record_batch
    assert decide_approval(params, withdrawal(), ["poisoning"]).action == client


def test_a_withdrawal_with_no_group_found_has_no_share_and_passes_no_share_rule() -> None:
    params = rules({"when": {"max_retrain_share": 1.0}, "then": "auto"}, default="ask")
    assert decide_approval(params, withdrawal(share=None), []) == Decision("ask", "default")

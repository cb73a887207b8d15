"""The drain's policy: one forget per batch, failures and approvals recorded, late arrivals joined.

A real workspace (made by `unlearn-ops init` and `prepare`: digits, split into shards) and
its real inbox and ledger; the forget and the approver are the drain's own seams, here
functions that record what they were given instead of training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import arrive, shard_record_ids
from unlearn_ops.deletion.drain import NO_DEPLOYMENT, drain
from unlearn_ops.deletion.inbox import InboxEntry
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.errors import ConfigError, FederationError, GateFailedError
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    pass


@pytest.fixture
def ws(prepared_workspace: Workspace) -> Workspace:
    return prepared_workspace


class Forgets:
    """Records each batch; answers as the forget pipeline does (a version)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.batches: list[list[str]] = []
        self.error = error
        self.during: list[Any] = []

    def __call__(self, ws: Workspace, batch: Sequence[ForgetRequest]) -> dict[str, Any]:
        self.batches.append([r.request_id for r in batch])
        for action in self.during:
            action()
        self.during = []
        if self.error is not None:
            raise self.error
        return {"version": str(len(self.batches) + 1), "requests": self.batches[-1]}


def ledger(ws: Workspace, request_id: str) -> list[str]:
    return [e.event for e in ws.ledger.entries() if e.request_id == request_id]


def test_one_forget_per_batch_and_the_unknown_fail_alone(ws: Workspace) -> None:
    records = shard_record_ids(ws, 0)
    arrive(ws, "dsr-1", records[:2])
    arrive(ws, "dsr-2", records[2:3])
    arrive(ws, "dsr-3", ["no-such-record"])
    forgets = Forgets()
    result = drain(ws, forgets, run="run-a")
    assert forgets.batches == [["dsr-1", "dsr-2"]]
    assert result["failed"] == {"dsr-3": "1 of 1 records were never in the training data"}
    assert ledger(ws, "dsr-3") == ["failed"]
    assert [b["version"] for b in result["batches"]] == ["2"]
    states = {e.request_id: (e.state, e.outcome) for e in ws.inbox.entries()}
    assert states["dsr-1"] == ("done", {"version": "2", "run": "run-a"})
    assert states["dsr-3"][0] == "failed"
    assert drain(ws, forgets)["batches"] == []  # nothing left: a drain then does nothing


def test_a_request_arriving_during_a_forget_joins_the_next_batch(ws: Workspace) -> None:
    records = shard_record_ids(ws, 1)
    arrive(ws, "early", records[:1])
    forgets = Forgets()
    forgets.during.append(lambda: arrive(ws, "late", records[1:2]))
    claims: list[int] = []
    result = drain(ws, forgets, before_claim=lambda: claims.append(len(claims)))
    assert forgets.batches == [["early"], ["late"]]
    assert len(result["batches"]) == 2
    assert claims == [0, 1, 2]  # before each claim, the last one finding nothing


def test_a_failed_forget_fails_its_batch_in_the_inbox_only(ws: Workspace) -> None:
    arrive(ws, "dsr-g", shard_record_ids(ws, 0)[:1])
    error = GateFailedError("2", "gate 'metric' failed: accuracy drop 0.0333", champion="1")
    result = drain(ws, Forgets(error=error))
    assert result["failed"] == {"dsr-g": str(error)}
    [entry] = ws.inbox.entries()
    assert (entry.state, entry.outcome) == ("failed", {"reason": str(error)})
    assert ledger(ws, "dsr-g") == []  # the forget pipeline writes its own `failed`


def test_anything_else_propagates_and_the_requests_stay_claimed(ws: Workspace) -> None:
    arrive(ws, "dsr-x", shard_record_ids(ws, 0)[:1])
    with pytest.raises(RuntimeError, match="killed"):
        drain(ws, Forgets(error=RuntimeError("killed")))
    assert [e.state for e in ws.inbox.entries()] == ["processing"]
    forgets = Forgets()
    drain(ws, forgets)  # the next drain takes it back
    assert forgets.batches == [["dsr-x"]]


def test_an_approver_who_refuses_fails_the_batch_with_the_reason(ws: Workspace) -> None:
    records = shard_record_ids(ws, 0)
    arrive(ws, "ask-1", records[:1])
    asked: list[list[str]] = []

    def refuse(ws: Workspace, summary: Mapping[str, Any], form: str) -> tuple[bool, str]:
        asked.append(list(summary["requests"]))
        assert "Asked by the rule: UNLEARN_OPS_APPROVAL_REQUIRED" in form
        return False, "legal hold"

    forgets = Forgets()
    result = drain(ws, forgets, require_approval=True, approver=refuse)
    assert asked == [["ask-1"]]
    assert forgets.batches == []
    assert result["failed"] == {"ask-1": "rejected by the approver: legal hold"}
    assert ledger(ws, "ask-1") == ["failed"]

    arrive(ws, "ask-2", records[1:2])
    result = drain(
        ws, forgets, require_approval=True, approver=lambda ws, summary, form: (True, "")
    )
    assert forgets.batches == [["ask-2"]]
    with pytest.raises(ConfigError, match="approval is required"):
        drain(ws, forgets, require_approval=True)


@pytest.fixture
def mixed(ws: Workspace) -> Workspace:
    """The inbox holds a record request (`dsr-1`) and a client's withdrawal (`withdraw-1`),
    signed and received as an intake records them."""
    from datetime import UTC, datetime, timedelta

    from tests.conftest import SIGNING_KEY
    from unlearn_ops.deletion.envelope import sign_request
    from unlearn_ops.deletion.receive import Accepted, receive

    arrive(ws, "dsr-1", shard_record_ids(ws, 0)[:1])
    body = {
        "request_id": "withdraw-1",
        "client_id": "hospital-3",
        "reason": "consent withdrawn",
        "requested_at": "2026-11-20T09:30:00+00:00",
    }
    envelope = sign_request(body, SIGNING_KEY, signed_at=datetime.now(UTC) - timedelta(seconds=1))
    assert isinstance(receive(ws.inbox, envelope, source="test"), Accepted)
    return ws


class Withdrawals:
    """The withdrawal stage's seam: records each entry; answers with a version or raises."""

    def __init__(self, error: Exception | None = None) -> None:
        self.entries: list[tuple[str, str | None]] = []
        self.error = error

    def __call__(self, ws: Workspace, entry: InboxEntry) -> dict[str, Any]:
        self.entries.append((entry.request_id, entry.client_hash))
        if self.error is not None:
            raise self.error
        return {"version": "7", "request_id": entry.request_id}


def test_a_client_withdrawal_without_a_deployment_fails_alone_and_says_where_it_goes(
    mixed: Workspace,
) -> None:
    ws = mixed
    forgets = Forgets()
    result = drain(ws, forgets, run="run-a")
    assert forgets.batches == [["dsr-1"]]
    assert result["failed"]["withdraw-1"] == NO_DEPLOYMENT
    assert "UNLEARN_OPS_FLOWER_HOME" in NO_DEPLOYMENT
    assert "unlearn-ops federation remove" in NO_DEPLOYMENT
    assert ledger(ws, "withdraw-1") == ["failed"]


def test_a_client_withdrawal_goes_to_the_withdrawal_stage_beside_the_record_batch(
    mixed: Workspace,
) -> None:
    ws = mixed
    forgets, withdrawals = Forgets(), Withdrawals()
    result = drain(ws, forgets, run="run-a", withdraw=withdrawals)
    assert forgets.batches == [["dsr-1"]]  # the withdrawal is not a record request
    assert withdrawals.entries == [("withdraw-1", ws.settings.hash_record_id("client:hospital-3"))]
    assert result["withdrawals"] == {"withdraw-1": "7"}
    assert result["failed"] == {}
    states = {e.request_id: (e.state, e.outcome) for e in ws.inbox.entries()}
    assert states["withdraw-1"] == ("done", {"version": "7", "run": "run-a"})
    assert drain(ws, forgets, withdraw=withdrawals)["withdrawals"] == {}  # served once


@pytest.mark.parametrize(
    ("error", "in_ledger"),
    [
        # The stage registered the version and wrote `failed` itself.
        (GateFailedError("9", "held-out accuracy dropped 0.300", "8"), []),
        # Refused before anything was recorded (here: the run failed on the deployment).
        (FederationError("flwr run", "the run ended failed"), ["failed"]),
    ],
)
def test_a_failed_withdrawal_fails_alone_and_can_be_retried(
    mixed: Workspace, error: Exception, in_ledger: list[str]
) -> None:
    ws = mixed
    forgets = Forgets()
    result = drain(ws, forgets, withdraw=Withdrawals(error))
    assert forgets.batches == [["dsr-1"]]
    assert result["failed"] == {"withdraw-1": str(error)}
    assert ledger(ws, "withdraw-1") == in_ledger
    ws.inbox.retry("withdraw-1")
    again = drain(ws, forgets, withdraw=Withdrawals())
    assert again["withdrawals"] == {"withdraw-1": "7"}

"""The one receive path: each outcome, what the inbox records for it, and deliveries seen twice."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import intake_settings
from unlearn_ops.deletion.envelope import sign_request
from unlearn_ops.deletion.inbox import Inbox
from unlearn_ops.deletion.receive import (
    Accepted,
    Duplicate,
    ReceiveCounts,
    ReceiveTally,
    Refused,
    Replayed,
    claimed_request_id,
    receive,
    refuse,
)

KEY = "receive-test-key"
TOKEN = "receive-test-token"
SETTINGS = intake_settings(KEY, TOKEN, "receive-test-id-key")


def envelope(request_id: str = "dsr-1", records: tuple[str, ...] = ("r1",), **kw: Any) -> Any:
    body = {
        "request_id": request_id,
        "record_ids": list(records),
        "reason": "GDPR art. 17",
        "requested_at": "2026-11-20T09:30:00+00:00",
    }
    signed_at = kw.pop("signed_at", datetime.now(UTC) - timedelta(seconds=1))
    return sign_request(body, kw.pop("key", KEY), signed_at=signed_at)


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "inbox.sqlite", SETTINGS)


def rejections(inbox: Inbox) -> list[tuple[str, str, str | None]]:
    return [(r.source, r.kind, r.request_id) for r in inbox.rejections()]


def test_accepted_then_duplicate(inbox: Inbox) -> None:
    assert receive(inbox, envelope(), source="a") == Accepted("dsr-1", "pending")
    assert receive(inbox, json.dumps(envelope()), source="b") == Duplicate("dsr-1", "pending")
    [entry] = inbox.entries()
    assert (entry.source, entry.deliveries) == ("a", 2)
    assert rejections(inbox) == []


@pytest.mark.parametrize(
    ("delivered", "kind"),
    [
        (b"{not json", "malformed"),
        (["a", "list"], "malformed"),
        (envelope(key="another-key"), "forged"),
        (envelope(signed_at=datetime.now(UTC) - timedelta(days=30)), "expired"),
        ({"version": 1, "request": envelope()["request"]}, "unsigned"),
    ],
    ids=["not JSON", "not an object", "forged", "expired", "unsigned"],
)
def test_a_refusal_is_recorded_with_its_kind(inbox: Inbox, delivered: object, kind: str) -> None:
    outcome = receive(inbox, delivered, source="s")
    assert isinstance(outcome, Refused)
    assert outcome.kind == kind
    assert "\n" not in outcome.message
    claimed = None if kind == "malformed" else "dsr-1"
    assert outcome.request_id == claimed
    assert rejections(inbox) == [("s", kind, claimed)]
    assert inbox.rejections()[0].reason == outcome.message
    assert inbox.entries() == []


def test_a_bearer_token_vouches_for_an_unsigned_envelope(inbox: Inbox) -> None:
    unsigned = {"version": 1, "request": envelope()["request"]}
    assert isinstance(receive(inbox, unsigned, source="h", bearer_token=TOKEN), Accepted)
    assert inbox.entries()[0].authenticated_by == "bearer"
    other = SETTINGS.model_copy(update={"request_bearer_token": None})
    refused = receive(inbox, unsigned, source="h", bearer_token=TOKEN, settings=other)
    assert isinstance(refused, Refused)
    assert refused.kind == "bad-token"


def test_a_replay_with_changes_is_refused_and_the_first_stands(inbox: Inbox) -> None:
    receive(inbox, envelope(records=("r1",)), source="a")
    outcome = receive(inbox, envelope(records=("r2",)), source="b")
    assert isinstance(outcome, Replayed)
    assert (outcome.request_id, outcome.kind) == ("dsr-1", "replayed-with-changes")
    assert rejections(inbox) == [("b", "replayed-with-changes", "dsr-1")]
    assert inbox.entries()[0].record_hashes == (SETTINGS.hash_record_id("r1"),)


def test_a_delivery_seen_before_is_judged_again_and_recorded_once(inbox: Inbox) -> None:
    forged = envelope("dsr-f", key="another-key")
    for _ in range(3):
        outcome = receive(inbox, forged, source="s3://b/k", delivery_id="s3://b/k#e1")
        assert isinstance(outcome, Refused)
    assert rejections(inbox) == [("s3://b/k", "forged", "dsr-f")]

    good = envelope("dsr-2")
    assert isinstance(receive(inbox, good, source="ev", delivery_id="ev-1"), Accepted)
    for _ in range(2):  # the same delivery again: nothing more is counted
        assert receive(inbox, good, source="ev", delivery_id="ev-1") == Duplicate(
            "dsr-2", "pending"
        )
    assert inbox.get("dsr-2").deliveries == 1  # type: ignore[union-attr]

    changed = envelope("dsr-2", records=("other",))
    for _ in range(2):
        outcome = receive(inbox, changed, source="ev", delivery_id="ev-2")
        assert isinstance(outcome, Replayed)
    assert [r.kind for r in inbox.rejections()].count("replayed-with-changes") == 1


def test_refuse_records_a_refusal_made_before_verifying(inbox: Inbox) -> None:
    outcome = refuse(inbox, Refused("too-large", "too\nmany  bytes"), source="http:1.2.3.4")
    assert outcome == Refused("too-large", "too many bytes")
    refuse(inbox, Refused("oversized", "big"), source="s", delivery_id="d")
    refuse(inbox, Refused("oversized", "big"), source="s", delivery_id="d")
    assert rejections(inbox) == [("http:1.2.3.4", "too-large", None), ("s", "oversized", None)]


def test_the_claimed_request_id_is_read_leniently() -> None:
    assert claimed_request_id(b'{"request": {"request_id": "dsr-9"}}') == "dsr-9"
    assert claimed_request_id({"request": {"request_id": "dsr-9"}}) == "dsr-9"
    assert claimed_request_id(b'{"request": {"request_id": "no spaces allowed"}}') is None
    assert claimed_request_id(b"[") is None
    assert claimed_request_id(42) is None


def test_outcomes_are_counted_from_many_threads() -> None:
    tally = ReceiveTally()
    outcomes = [Accepted("a"), Duplicate("a", "done"), Refused("forged", "x"), Replayed("a", "y")]

    def count() -> None:
        for outcome in outcomes * 250:
            tally.add(outcome)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tally.counts() == ReceiveCounts(accepted=1000, duplicates=1000, refused=2000)
    assert ReceiveCounts(1, 2, 3) + ReceiveCounts(1, 1, 1) == ReceiveCounts(2, 3, 4)

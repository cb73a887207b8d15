"""Legal holds: placed and released in the ledger, honoured by the drain and by `hold_back`.

A real workspace (made by `unlearn-ops init` and `prepare`: digits, split into shards), its
real inbox and ledger; the forget is the drain's seam, a function that records its batches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.conftest import arrive, shard_record_ids
from unlearn_ops.deletion.drain import drain
from unlearn_ops.deletion.holds import (
    HoldError,
    fold_holds,
    place_hold,
    release_expired,
    release_hold,
)
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.errors import UnknownRecordsError
from unlearn_ops.workflow.batch import hold_back, receive_requests
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from tests.conftest import CliRunner


@pytest.fixture
def ws(prepared_workspace: Workspace) -> Workspace:
    return prepared_workspace


class Forgets:
    """Records each batch (request id -> record ids); answers with a version."""

    def __init__(self) -> None:
        self.batches: list[dict[str, list[str]]] = []

    def __call__(self, ws: Workspace, batch: Sequence[ForgetRequest]) -> dict[str, Any]:
        self.batches.append({r.request_id: sorted(r.record_ids) for r in batch})
        return {"version": str(len(self.batches) + 1), "requests": list(self.batches[-1])}


def events(ws: Workspace, request_id: str) -> list[str]:
    return [e.event for e in ws.ledger.entries() if e.request_id == request_id]


def test_a_hold_is_kept_as_keyed_hashes_with_who_when_why(ws: Workspace) -> None:
    hold = place_hold(ws, record_ids=["17", 18], reason="litigation 2026-17", actor="dpo")
    [entry] = ws.ledger.entries()
    assert (entry.event, entry.request_id) == ("hold-added", hold.hold_id)
    assert entry.data["actor"] == "dpo"
    assert entry.data["reason"] == "litigation 2026-17"
    assert entry.data["record_hashes"] == sorted(
        ws.settings.hash_record_id(r) for r in ("17", "18")
    )
    assert '"17"' not in ws.ledger.path.read_text()  # no record id on disk
    assert ws.ledger.requests() == {}  # a hold is not a request
    release_hold(ws, hold.hold_id, reason="settled", actor="dpo-2")
    released = fold_holds(ws.ledger.entries())[hold.hold_id]
    assert (released.released_by, released.release_reason) == ("dpo-2", "settled")
    assert released.status(datetime.now(UTC)) == "released"
    assert ws.ledger.verify_chain() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"record_ids": ["1"], "subject": "alice", "reason": "x"}, "one of them"),
        ({"subject": "alice", "client": "site-1", "reason": "x"}, "one of them"),
        ({"reason": "x"}, "one of them"),
        ({"record_ids": ["1"], "reason": "  "}, "a reason is required"),
        ({"record_ids": ["1"], "reason": "x", "until": "2001-01-01"}, "not in the future"),
        ({"record_ids": ["1"], "reason": "x", "until": "next week"}, "is not a date"),
    ],
)
def test_a_bad_hold_is_refused_and_nothing_is_written(
    ws: Workspace, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(HoldError, match=message):
        place_hold(ws, **kwargs)
    assert list(ws.ledger.entries()) == []


def test_a_hold_on_a_site_needs_a_federation(ws: Workspace, cli: CliRunner) -> None:
    argv = ["hold", "add", "--client", "site-1", "--reason", "litigation", "-w", str(ws.root)]
    code, out, err = cli(argv)
    assert code != 0
    assert "no federation in" in err
    assert out == ""
    assert list(ws.ledger.entries()) == []


def test_a_hold_on_records_the_data_never_held_is_refused(ws: Workspace) -> None:
    with pytest.raises(UnknownRecordsError):
        place_hold(ws, record_ids=["17", "no-such-record"], reason="litigation 2026-17")
    assert list(ws.ledger.entries()) == []


def test_releasing_twice_or_an_unknown_hold_is_refused(ws: Workspace) -> None:
    hold = place_hold(ws, record_ids=["1"], reason="x")
    release_hold(ws, hold.hold_id)
    with pytest.raises(HoldError, match="released already"):
        release_hold(ws, hold.hold_id)
    with pytest.raises(HoldError, match="no hold 'hold-nope'"):
        release_hold(ws, "hold-nope")


def test_the_drain_sets_a_held_request_aside_and_serves_it_once_released(ws: Workspace) -> None:
    records = shard_record_ids(ws, 0)
    hold = place_hold(ws, record_ids=[records[0]], reason="litigation 2026-17", actor="dpo")
    arrive(ws, "dsr-held", records[:2])
    arrive(ws, "dsr-free", records[2:3])
    forgets = Forgets()
    result = drain(ws, forgets)
    assert forgets.batches == [{"dsr-free": [records[2]]}]
    assert result["held"] == {"dsr-held": f"{hold.hold_id}: litigation 2026-17"}
    states = {e.request_id: e.state for e in ws.inbox.entries()}
    assert states == {"dsr-held": "held", "dsr-free": "done"}
    assert ws.inbox.get("dsr-held").outcome == {  # type: ignore[union-attr]
        "reason": f"under legal hold: {hold.hold_id}: litigation 2026-17"
    }
    assert events(ws, "dsr-held") == ["received", "held"]
    assert ws.ledger.requests()["dsr-held"].state == "held"
    assert drain(ws, forgets)["batches"] == []  # still held: a second drain does nothing
    assert events(ws, "dsr-held") == ["received", "held"]

    done = release_hold(ws, hold.hold_id, reason="claim settled", actor="dpo")
    assert (done.queued, done.rerun) == (["dsr-held"], [])
    assert ws.ledger.requests()["dsr-held"].state == "received"
    drain(ws, forgets)
    assert forgets.batches[1:] == [{"dsr-held": sorted(records[:2])}]
    drain(ws, forgets)
    assert len(forgets.batches) == 2  # exactly once
    assert ws.inbox.get("dsr-held").state == "done"  # type: ignore[union-attr]


def test_a_request_held_by_two_holds_waits_for_both(ws: Workspace) -> None:
    records = shard_record_ids(ws, 1)
    first = place_hold(ws, record_ids=[records[0]], reason="audit")
    second = place_hold(ws, record_ids=[records[1]], reason="tax law")
    arrive(ws, "dsr-2h", records[:2])
    forgets = Forgets()
    drain(ws, forgets)
    assert release_hold(ws, first.hold_id).still_held == ["dsr-2h"]
    drain(ws, forgets)
    assert forgets.batches == []
    assert release_hold(ws, second.hold_id).queued == ["dsr-2h"]
    drain(ws, forgets)
    assert forgets.batches == [{"dsr-2h": sorted(records[:2])}]


def test_a_hold_ends_by_itself_at_its_end_date(ws: Workspace) -> None:
    records = shard_record_ids(ws, 0)
    now = datetime.now(UTC)
    hold = place_hold(ws, record_ids=[records[0]], reason="x", until=now + timedelta(hours=1))
    arrive(ws, "dsr-until", records[:1])
    forgets = Forgets()
    drain(ws, forgets)
    assert forgets.batches == []
    [release] = release_expired(ws, now=now + timedelta(hours=2))
    assert release.queued == ["dsr-until"]
    assert fold_holds(ws.ledger.entries())[hold.hold_id].released_by.startswith("unlearn-ops")
    drain(ws, forgets)
    assert forgets.batches == [{"dsr-until": [records[0]]}]


def test_partial_holds_erase_the_other_records_now(ws: Workspace) -> None:
    params = yaml.safe_load(ws.params_path.read_text())
    params["compliance"]["holds"] = "partial"
    ws.params_path.write_text(yaml.safe_dump(params))
    ws = ws.reopen()
    records = shard_record_ids(ws, 0)
    hold = place_hold(ws, record_ids=[records[0]], reason="litigation")
    arrive(ws, "dsr-p", records[:3])
    forgets = Forgets()
    drain(ws, forgets)
    assert forgets.batches == [{"dsr-p.unheld": sorted(records[1:3])}]
    assert ws.inbox.get("dsr-p").state == "held"  # type: ignore[union-attr]
    [held] = [e for e in ws.ledger.entries() if e.event == "held"]
    assert (held.data["records_held"], held.data["proceeding_as"]) == (1, "dsr-p.unheld")
    release_hold(ws, hold.hold_id)
    drain(ws, forgets)
    assert forgets.batches[1] == {"dsr-p": sorted(records[:3])}


def test_a_part_split_off_twice_gets_an_id_of_its_own(ws: Workspace) -> None:
    """Hold A; `cli-1` {A, B} sends B ahead as `cli-1.unheld`; then B is held and A released.

    The rerun's unheld part is {A}: under the first part's id it would be a replay with
    other records, refused (the hold property test found this sequence).
    """
    params = yaml.safe_load(ws.params_path.read_text())
    params["compliance"]["holds"] = "partial"
    ws.params_path.write_text(yaml.safe_dump(params))
    ws = ws.reopen()
    a, b = shard_record_ids(ws, 0)[:2]
    first = place_hold(ws, record_ids=[a], reason="litigation")
    request = ForgetRequest.build([a, b], "cli-1", "erasure request")
    [ahead] = hold_back(ws, [request]).proceed
    assert (ahead.request_id, ahead.record_ids) == ("cli-1.unheld", (b,))
    receive_requests(ws, [ahead])  # as the forget that erases it does
    place_hold(ws, record_ids=[b], reason="tax law")
    release_hold(ws, first.hold_id)
    [then] = hold_back(ws, [request]).proceed
    assert (then.request_id, then.record_ids) == ("cli-1.unheld.2", (a,))
    receive_requests(ws, [then])
    [again] = hold_back(ws, [request]).proceed  # a rerun: the same part, the same id
    assert (again.request_id, again.record_ids) == ("cli-1.unheld.2", (a,))
    [held] = [e for e in ws.ledger.entries() if e.event == "held"][-1:]
    assert held.data["proceeding_as"] == "cli-1.unheld.2"


def test_hold_back_covers_a_forget_run_from_the_cli(ws: Workspace) -> None:
    records = shard_record_ids(ws, 1)
    hold = place_hold(ws, record_ids=[records[5]], reason="legal obligation")
    request = ForgetRequest.build(records[4:6], "cli-1", "erasure request")
    kept = hold_back(ws, [request])
    assert kept.proceed == []
    assert "under legal hold" in kept.answer()["message"]
    assert kept.answer()["noop"] is True
    hold_back(ws, [request])  # a rerun while it stands writes nothing new
    assert events(ws, "cli-1") == ["received", "held"]
    done = release_hold(ws, hold.hold_id)
    assert (done.queued, done.rerun) == ([], ["cli-1"])
    assert hold_back(ws, [request]).proceed == [request]


def test_a_subject_hold_holds_that_subjects_records(ws: Workspace) -> None:
    subject_hash = ws.settings.hash_subject_id("alice")
    records = shard_record_ids(ws, 0)[:2]
    index = {subject_hash: sorted(ws.settings.hash_record_id(r) for r in records)}
    (ws.root / "subjects.json").write_text(json.dumps({"subjects": index}))
    place_hold(ws, subject="alice", reason="litigation")
    request = ForgetRequest.build(records[1:2], "by-record", "erasure")
    other = ForgetRequest.build(shard_record_ids(ws, 1)[:1], "other", "erasure")
    kept = hold_back(ws, [request, other])
    assert [r.request_id for r in kept.proceed] == ["other"]
    assert list(kept.held) == ["by-record"]


def test_the_cli_places_lists_and_releases_holds(ws: Workspace, cli: CliRunner) -> None:
    code, out, err = cli(
        [
            "hold",
            "add",
            "--ids",
            "3,5",
            "--reason",
            "litigation",
            "--actor",
            "dpo",
            "--until",
            "2127-06-30",
            "-w",
            str(ws.root),
        ]
    )
    assert code == 0, err
    hold_id = out.split(":")[0]
    assert out.startswith("hold-")
    # Times as people read them (to the second, in UTC); --json keeps ISO 8601.
    assert "2 record(s) held until 2127-06-30 00:00:00 UTC (litigation), by dpo" in out
    code, out, _ = cli(["hold", "list", "-w", str(ws.root)])
    assert re.search(r"placed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by dpo, until 2127-06-30 ", out)
    code, out, _ = cli(["hold", "list", "-w", str(ws.root), "--json"])
    [row] = json.loads(out)["holds"]
    assert (row["hold_id"], row["status"], row["placed_by"]) == (hold_id, "active", "dpo")
    assert row["until"] == "2127-06-30T00:00:00+00:00"
    code, out, _ = cli(["hold", "release", hold_id, "--reason", "done", "-w", str(ws.root)])
    assert code == 0
    assert f"{hold_id} released by" in out
    code, out, _ = cli(["hold", "list", "-w", str(ws.root)])
    assert out.strip() == "no legal hold stands"
    code, _, err = cli(["hold", "release", hold_id, "-w", str(ws.root)])
    assert code != 0
    assert "released already" in err


def test_the_deadline_clock_is_paused_while_a_hold_stands(ws: Workspace) -> None:
    from unlearn_ops.compliance.audit import build_audit, received_entries
    from unlearn_ops.compliance.audit_text import describe_audit

    records = shard_record_ids(ws, 0)
    hold = place_hold(ws, record_ids=[records[0]], reason="litigation 2026-17")
    hold_back(ws, [ForgetRequest.build(records[:1], "clock-1", "erasure")])
    state = ws.ledger.requests()["clock-1"]
    received = received_entries(ws.ledger.entries())["clock-1"]
    held_at = datetime.fromisoformat(state.holds[0]["at"])
    later = held_at + timedelta(days=40)  # past the 30-day deadline, but paused

    audit = build_audit(state, received, [], ws.params.compliance, now=later)
    assert audit.deadline_status == "paused"
    assert audit.paused_reason == f"{hold.hold_id}: litigation 2026-17"
    assert audit.paused_days == pytest.approx(40, abs=1e-3)
    assert f"hold: the clock is paused by {hold.hold_id}" in "\n".join(describe_audit(audit))

    release_hold(ws, hold.hold_id)
    state = ws.ledger.requests()["clock-1"]
    released_at = datetime.fromisoformat(state.holds[0]["released_at"])
    audit = build_audit(state, received, [], ws.params.compliance, now=released_at)
    assert audit.deadline_status == "pending"
    assert audit.paused_reason is None
    requested = audit.requested_at
    paused = released_at - held_at
    assert audit.deadline == requested + timedelta(days=30) + paused

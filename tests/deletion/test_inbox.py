"""The durable inbox: exactly-once recording of deletion requests delivered at least once.

Real sqlite files in tmp_path. Duplicates change nothing but a delivery count, a replay
with changes is refused and leaves the first request as it was, a drain claims what a
crashed run left behind, and several threads or processes accepting one request at once
record it once. The file never holds a record id, only keyed hashes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import intake_settings
from unlearn_ops.deletion.envelope import VerifiedRequest, sign_request, verify_request
from unlearn_ops.deletion.inbox import Accepted, Inbox, InboxEntry, Rejection
from unlearn_ops.errors import ReplayedRequestError, RequestNotFoundError, StoreError
from unlearn_ops.settings import Settings

KEY = "sk-test-inbox-3c9e"
TOKEN = "tok-test-inbox-77a1"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SETTINGS = intake_settings(KEY, TOKEN, "idk-test-inbox-hash-key", request_max_age_seconds=3600)
RECORDS = ["patient-4711-xyz", "patient-0815-xyz"]
REQUEST: dict[str, Any] = {
    "request_id": "dsr-2026-0042",
    "record_ids": RECORDS,
    "reason": "GDPR art. 17",
    "requested_at": "2026-11-20T09:30:00+00:00",
}
ID_MARKERS = (b"patient-", b"subject-")


def signed(request: Mapping[str, Any] = REQUEST, age: float = 60.0) -> dict[str, Any]:
    return sign_request(request, KEY, signed_at=NOW - timedelta(seconds=age))


def verified(request: Mapping[str, Any] = REQUEST, **changes: Any) -> VerifiedRequest:
    """A request as verify_request returns it (signed a minute before NOW)."""
    return verify_request(signed({**request, **changes}), SETTINGS, now=NOW)


def by_token(request: Mapping[str, Any] = REQUEST) -> VerifiedRequest:
    envelope = {"version": 1, "request": dict(request)}
    return verify_request(envelope, SETTINGS, bearer_token=TOKEN, now=NOW)


def subject_request(subject: str = "subject-981-xyz", **changes: Any) -> VerifiedRequest:
    body = {k: v for k, v in REQUEST.items() if k != "record_ids"}
    return verified({**body, "subject_id": subject, **changes})


def raw_rows(inbox: Inbox, table: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(inbox.path)) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608


def files_hold(folder: Path, *needles: bytes) -> list[str]:
    """Names of the files in `folder` (the database, its WAL) that hold any needle."""
    return sorted(
        path.name
        for path in folder.iterdir()
        if path.is_file() and any(needle in path.read_bytes() for needle in needles)
    )


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "state" / "inbox.db", SETTINGS)


# ---------------------------------------------------------------------------- reading
def test_a_new_inbox_is_empty_and_reading_it_creates_nothing(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "not-yet" / "inbox.db", SETTINGS)
    assert inbox.entries() == []
    assert inbox.entries("pending") == []
    assert inbox.get("dsr-1") is None
    assert inbox.rejections() == []
    assert inbox.counts() == {}
    assert not (tmp_path / "not-yet").exists()
    assert repr(inbox) == f"Inbox({str(tmp_path / 'not-yet' / 'inbox.db')!r})"


# ----------------------------------------------------------------------------- accept
def test_a_new_request_is_recorded_pending_with_keyed_hashes(inbox: Inbox) -> None:
    accepted = inbox.accept(verified(), "s3://intake/dsr-2026-0042.json")
    assert accepted == Accepted("dsr-2026-0042", "new", "pending")
    entry = inbox.get("dsr-2026-0042")
    assert entry is not None
    assert entry.request_id == "dsr-2026-0042"
    assert entry.fingerprint == verified().fingerprint(SETTINGS)
    assert entry.record_hashes == tuple(sorted(SETTINGS.hash_record_id(r) for r in RECORDS))
    assert entry.subject_hash is None
    assert entry.reason == "GDPR art. 17"
    assert entry.requested_at == "2026-11-20T09:30:00+00:00"
    assert entry.authenticated_by == "hmac:default"
    assert entry.source == "s3://intake/dsr-2026-0042.json"
    assert datetime.fromisoformat(entry.received_at).tzinfo is not None
    assert (entry.deliveries, entry.state, entry.attempts) == (1, "pending", 0)
    assert (entry.claimed_by, entry.outcome) == (None, None)
    assert inbox.entries() == [entry]
    assert inbox.counts() == {"pending": 1, "rejected": 0}


def test_an_entry_as_json_counts_records_and_lists_no_hash(inbox: Inbox) -> None:
    inbox.accept(verified(), "http:10.0.0.7")
    entry = inbox.entries()[0]
    data = entry.to_dict()
    assert data["records"] == 2
    assert data["subject"] is False
    assert data["source"] == "http:10.0.0.7"
    text = json.dumps(data)
    assert not any(h in text for h in entry.record_hashes)
    assert "patient" not in text


def test_requested_at_is_kept_in_utc(inbox: Inbox) -> None:
    inbox.accept(verified(requested_at="2026-11-20T11:30:00+02:00"), "test")
    assert inbox.entries()[0].requested_at == "2026-11-20T09:30:00+00:00"


def test_a_subject_request_keeps_the_subjects_keyed_hash(inbox: Inbox) -> None:
    from unlearn_ops.deletion.intake import build_subject_index

    inbox.accept(subject_request(), "test")
    entry = inbox.entries()[0]
    assert entry.record_hashes == ()
    assert entry.subject_hash == SETTINGS.hash_record_id("subject:subject-981-xyz")
    # ... which is the key a drain looks up in the workspace's subject index.
    assert entry.subject_hash in build_subject_index(SETTINGS, ["subject-981-xyz"], ["r1"])
    assert entry.to_dict()["subject"] is True
    assert entry.to_dict()["records"] == 0


def test_a_client_withdrawal_keeps_the_clients_keyed_hash(inbox: Inbox) -> None:
    body = {k: v for k, v in REQUEST.items() if k != "record_ids"}
    inbox.accept(verified({**body, "client_id": "hospital-3-xyz"}), "test")
    entry = inbox.entries()[0]
    assert (entry.record_hashes, entry.subject_hash) == ((), None)
    assert entry.client_hash == SETTINGS.hash_record_id("client:hospital-3-xyz")
    assert entry.to_dict()["client"] is True
    assert b"hospital-3" not in inbox.path.read_bytes()
    inbox.accept(verified(request_id="dsr-2"), "test")  # a record request names no client
    assert inbox.entries()[1].client_hash is None


def test_an_inbox_from_before_withdrawals_gains_the_client_column(tmp_path: Path) -> None:
    """The schema of an inbox made before the `producer` and `client_hash` columns: its
    requests read back, and a withdrawal can be recorded beside them."""
    from unlearn_ops.deletion import inbox as inbox_module

    path = tmp_path / "inbox.db"
    old_schema = inbox_module._SCHEMA.replace(",\n    producer TEXT,\n    client_hash TEXT", "")
    assert "client_hash" not in old_schema
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(old_schema)
        db.execute(
            "INSERT INTO requests (request_id, fingerprint, record_hashes, subject_hash, reason,"
            " requested_at, authenticated_by, source, received_at, state)"
            " VALUES ('old-1', 'f', '[\"h1\"]', NULL, 'r', '2026-01-01T00:00:00+00:00',"
            " 'hmac:default', 'test', '2026-01-01T00:00:00+00:00', 'pending')"
        )
        db.commit()
    upgraded = Inbox(path, SETTINGS)
    [old] = upgraded.entries()
    assert (old.request_id, old.producer, old.client_hash) == ("old-1", None, None)
    body = {k: v for k, v in REQUEST.items() if k != "record_ids"}
    upgraded.accept(verified({**body, "client_id": "hospital-9-xyz"}), "test")
    assert upgraded.entries()[1].client_hash is not None


def test_a_duplicate_delivery_changes_nothing_but_the_delivery_count(inbox: Inbox) -> None:
    inbox.accept(verified(), "s3://intake/a.json")
    first = inbox.entries()[0]
    # Same content, delivered again: re-signed later, by token, ids in another order or
    # as numbers, the same instant written in another zone.
    deliveries = [
        verified(),
        verify_request(signed(age=0), SETTINGS, now=NOW),
        by_token(),
        verified(record_ids=list(reversed(RECORDS))),
        verified(requested_at="2026-11-20T10:30:00+01:00"),
        verified(expires_at=None),
    ]
    for n, request in enumerate(deliveries, start=2):
        assert inbox.accept(request, f"retry-{n}") == Accepted(
            "dsr-2026-0042", "duplicate", "pending"
        )
    entry = inbox.entries()[0]
    assert entry.deliveries == 1 + len(deliveries)
    assert entry == InboxEntry(**{**first.__dict__, "deliveries": 1 + len(deliveries)})
    assert inbox.rejections() == []


def test_a_duplicate_reports_the_current_state(inbox: Inbox) -> None:
    inbox.accept(verified(), "test")
    inbox.claim("run-1")
    assert inbox.accept(verified(), "test").state == "processing"
    inbox.complete(["dsr-2026-0042"], {"version": "3"})
    assert inbox.accept(verified(), "test") == Accepted("dsr-2026-0042", "duplicate", "done")
    assert inbox.get("dsr-2026-0042").outcome == {"version": "3"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "changed",
    [
        lambda: verified(record_ids=[*RECORDS, "patient-9-xyz"]),
        lambda: verified(record_ids=RECORDS[:1]),
        lambda: verified(reason="GDPR art. 17(1)(d)"),
        lambda: verified(requested_at="2026-11-20T09:30:01+00:00"),
        lambda: verified(expires_at="2027-01-01T00:00:00+00:00"),
        lambda: subject_request(request_id="dsr-2026-0042"),
    ],
    ids=["more records", "fewer records", "reason", "requested_at", "expires_at", "subject"],
)
def test_a_replay_with_changes_is_refused_and_the_first_request_stands(
    inbox: Inbox, changed: Any
) -> None:
    inbox.accept(verified(), "s3://intake/first.json")
    before = raw_rows(inbox, "requests")
    with pytest.raises(ReplayedRequestError) as caught:
        inbox.accept(changed(), "s3://intake/second.json")
    assert caught.value.request_id == "dsr-2026-0042"
    assert str(caught.value) == (
        "invalid request: request dsr-2026-0042 was received before with other content; "
        "a request id is an idempotency key: use a new id for new records"
    )
    assert raw_rows(inbox, "requests") == before
    [rejection] = inbox.rejections()
    assert rejection.source == "s3://intake/second.json"
    assert rejection.request_id == "dsr-2026-0042"
    assert rejection.kind == "replayed-with-changes"
    assert rejection.reason == str(caught.value)
    assert inbox.counts() == {"pending": 1, "rejected": 1}


def test_a_replay_by_token_is_refused_like_a_signed_one(inbox: Inbox) -> None:
    inbox.accept(verified(), "test")
    with pytest.raises(ReplayedRequestError):
        inbox.accept(by_token({**REQUEST, "reason": "changed"}), "http:10.0.0.7")
    assert inbox.entries()[0].authenticated_by == "hmac:default"


# A property: whatever the first request, changing what it asks is a replay, and only that.
RECORD_IDS = st.lists(
    st.integers(0, 99_999).map(lambda n: f"patient-{n}-xyz"), min_size=1, max_size=4, unique=True
)
TIMES = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda moment: moment.replace(tzinfo=UTC).isoformat()
)
LATER = st.datetimes(min_value=datetime(2030, 1, 2), max_value=datetime(2040, 1, 1)).map(
    lambda moment: moment.replace(tzinfo=UTC).isoformat()
)
FIRSTS = st.fixed_dictionaries(
    {
        "record_ids": RECORD_IDS,
        "reason": st.text(min_size=1, max_size=20).filter(lambda r: "patient" not in r),
        "requested_at": TIMES,
    }
)
CHANGES = st.one_of(
    st.fixed_dictionaries({"record_ids": RECORD_IDS}),
    st.fixed_dictionaries({"reason": st.text(min_size=1, max_size=20)}),
    st.fixed_dictionaries({"requested_at": TIMES}),
    st.fixed_dictionaries({"expires_at": LATER}),
    st.fixed_dictionaries(
        {
            "subject_id": st.integers(0, 99).map(lambda n: f"subject-{n}-xyz"),
            "record_ids": st.none(),
        }
    ),
)
SEQUENCE = itertools.count()


@pytest.fixture(scope="module")
def shared_inbox(tmp_path_factory: pytest.TempPathFactory) -> Inbox:
    return Inbox(tmp_path_factory.mktemp("replays") / "inbox.db", SETTINGS)


def _body(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if v is not None}


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(first=FIRSTS, change=CHANGES, shuffle=st.randoms(use_true_random=False))
def test_changing_what_a_request_asks_is_a_replay_and_the_first_stands(
    shared_inbox: Inbox, first: dict[str, Any], change: dict[str, Any], shuffle: Any
) -> None:
    request = {"request_id": f"dsr-replay-{next(SEQUENCE)}", **first}
    assert shared_inbox.accept(verified(request), "first").status == "new"
    before = raw_rows(shared_inbox, "requests")
    rejected = shared_inbox.counts()["rejected"]
    # The same content again, in another order and re-signed: a duplicate.
    ids = list(request["record_ids"])
    shuffle.shuffle(ids)
    again = verify_request(signed({**request, "record_ids": ids}, age=1), SETTINGS, now=NOW)
    assert shared_inbox.accept(again, "again").status == "duplicate"
    changed = _body({**request, **change})
    asks_the_same = verified(changed).fingerprint(SETTINGS) == verified(request).fingerprint(
        SETTINGS
    )
    event("a change that changes nothing" if asks_the_same else "a replay with changes")
    if asks_the_same:  # a drawn change that changes nothing (same ids, same reason)
        assert shared_inbox.accept(verified(changed), "changed").status == "duplicate"
        return
    with pytest.raises(ReplayedRequestError):
        shared_inbox.accept(verified(changed), "changed")
    after = raw_rows(shared_inbox, "requests")
    # Only the delivery count of this request moved (by the duplicate).
    mine = [i for i, row in enumerate(before) if row[0] == request["request_id"]]
    assert len(mine) == 1
    expected = list(before)
    row = list(expected[mine[0]])
    row[9] += 1  # deliveries
    expected[mine[0]] = tuple(row)
    assert after == expected
    assert shared_inbox.counts()["rejected"] == rejected + 1
    assert shared_inbox.rejections()[-1].request_id == request["request_id"]


def test_zz_the_replayed_inbox_holds_no_record_id(shared_inbox: Inbox) -> None:
    if not shared_inbox.entries():  # run alone: the replay property runs here
        test_changing_what_a_request_asks_is_a_replay_and_the_first_stands(
            shared_inbox=shared_inbox
        )
    assert shared_inbox.counts()["pending"] >= 100
    assert files_hold(shared_inbox.path.parent, *ID_MARKERS) == []


# ----------------------------------------------------------------------- deliveries
def test_delivery_ids_are_remembered_for_accepted_and_refused_deliveries(inbox: Inbox) -> None:
    assert not inbox.seen_delivery("evt-1")
    inbox.accept(verified(), "event", delivery_id="evt-1")
    inbox.reject("event", "forged", "unauthenticated request (forged): ...", delivery_id="evt-2")
    inbox.accept(verified(), "event", delivery_id="evt-1")  # the same delivery twice
    assert inbox.seen_delivery("evt-1")
    assert inbox.seen_delivery("evt-2")
    assert not inbox.seen_delivery("evt-3")
    assert [row[:2] for row in raw_rows(inbox, "deliveries")] == [
        ("evt-1", "dsr-2026-0042"),
        ("evt-2", None),
    ]


def test_a_rejection_keeps_where_why_and_which_kind(inbox: Inbox) -> None:
    first = inbox.reject("http:10.0.0.9", "bad-token", "the bearer token is not accepted")
    second = inbox.reject("s3://b/k", "malformed", "x" * 5000, request_id="dsr-9")
    assert isinstance(first, Rejection)
    assert inbox.rejections() == [first, second]
    assert (second.source, second.request_id, second.kind) == ("s3://b/k", "dsr-9", "malformed")
    assert len(second.reason) == 1000
    assert inbox.counts() == {"rejected": 2}
    assert inbox.entries() == []


# ------------------------------------------------------------------------ processing
def accept_three(inbox: Inbox) -> None:
    for n in (1, 2, 3):
        inbox.accept(verified(request_id=f"dsr-{n}", record_ids=[f"patient-{n}-xyz"]), "test")


def test_claim_takes_every_pending_request_in_arrival_order(inbox: Inbox) -> None:
    assert inbox.claim("run-0") == []
    accept_three(inbox)
    claimed = inbox.claim("run-1")
    assert [e.request_id for e in claimed] == ["dsr-1", "dsr-2", "dsr-3"]
    assert {(e.state, e.claimed_by, e.attempts) for e in claimed} == {("processing", "run-1", 1)}
    assert inbox.counts() == {"processing": 3, "rejected": 0}


def test_claim_takes_back_what_a_crashed_run_held_but_not_finished_requests(
    inbox: Inbox,
) -> None:
    accept_three(inbox)
    inbox.claim("run-1")  # ... and run-1 crashed
    inbox.accept(verified(request_id="dsr-4", record_ids=["patient-4-xyz"]), "test")
    inbox.complete(["dsr-1"], {"version": "5"})
    inbox.fail(["dsr-2"], "the data never held patient 2")
    claimed = inbox.claim("run-2")
    assert [(e.request_id, e.attempts) for e in claimed] == [("dsr-3", 2), ("dsr-4", 1)]
    assert {e.claimed_by for e in claimed} == {"run-2"}
    assert inbox.claim("run-3") == [
        InboxEntry(**{**e.__dict__, "claimed_by": "run-3", "attempts": e.attempts + 1})
        for e in claimed
    ]
    assert inbox.counts() == {"done": 1, "failed": 1, "processing": 2, "rejected": 0}
    assert [e.request_id for e in inbox.entries("done")] == ["dsr-1"]
    assert [e.request_id for e in inbox.entries("failed")] == ["dsr-2"]
    assert [e.request_id for e in inbox.entries("pending")] == []


def test_complete_and_fail_record_the_outcome(inbox: Inbox) -> None:
    accept_three(inbox)
    inbox.claim("run-1")
    inbox.complete(["dsr-1", "dsr-2"], {"version": "7", "run": "abc"})
    inbox.fail(["dsr-3"], "gate failed: " + "y" * 2000)
    done = inbox.entries("done")
    assert [e.outcome for e in done] == [{"run": "abc", "version": "7"}] * 2
    [failed] = inbox.entries("failed")
    assert failed.outcome is not None
    assert failed.outcome["reason"].startswith("gate failed: ")
    assert len(failed.outcome["reason"]) == 1000
    assert failed.to_dict()["outcome"] == failed.outcome


def test_retry_puts_a_failed_request_back_to_pending(inbox: Inbox) -> None:
    accept_three(inbox)
    inbox.claim("run-1")
    inbox.fail(["dsr-2"], "no such records")
    entry = inbox.retry("dsr-2")
    assert (entry.state, entry.outcome) == ("pending", None)
    assert inbox.get("dsr-2") == entry
    # A request that did not fail is left as it is.
    assert inbox.retry("dsr-1").state == "processing"
    assert [e.request_id for e in inbox.claim("run-2")] == ["dsr-1", "dsr-2", "dsr-3"]


def test_retry_of_an_unknown_request_names_the_known_ones(inbox: Inbox) -> None:
    accept_three(inbox)
    with pytest.raises(RequestNotFoundError) as caught:
        inbox.retry("dsr-404")
    assert "'dsr-404'" in str(caught.value)
    assert "dsr-1, dsr-2, dsr-3" in str(caught.value)
    assert inbox.counts() == {"pending": 3, "rejected": 0}


def test_an_inbox_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "inbox.db").mkdir()
    with pytest.raises(StoreError, match="inbox"):
        Inbox(tmp_path / "inbox.db", SETTINGS).accept(verified(), "test")
    (tmp_path / "file").write_text("not a folder")
    under_a_file = Inbox(tmp_path / "file" / "inbox.db", SETTINGS)
    with pytest.raises(StoreError, match="cannot open the inbox"):
        under_a_file.accept(verified(), "test")


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="inbox database error"):
        Inbox(path, SETTINGS).entries()


def test_a_failure_inside_a_transaction_rolls_it_back(
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox.accept(verified(), "test")

    def broken(self: VerifiedRequest, settings: Settings) -> list[str]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(VerifiedRequest, "record_hashes", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        inbox.accept(verified(request_id="dsr-2"), "test", delivery_id="evt-9")
    assert [e.request_id for e in inbox.entries()] == ["dsr-2026-0042"]
    assert not inbox.seen_delivery("evt-9")  # the delivery row went with the rollback


# ---------------------------------------------------------------------- no record ids
def test_the_inbox_file_never_holds_a_record_id_or_subject_id(inbox: Inbox) -> None:
    inbox.accept(verified(), "test", delivery_id="evt-1")
    inbox.accept(subject_request(request_id="dsr-subject"), "test")
    inbox.accept(by_token({**REQUEST, "request_id": "dsr-token"}), "test")
    with pytest.raises(ReplayedRequestError):
        inbox.accept(verified(record_ids=["patient-9999-xyz"]), "test")
    inbox.claim("run-1")
    inbox.complete(["dsr-2026-0042"], {"version": "2"})
    inbox.fail(["dsr-subject"], "no subject index")
    inbox.retry("dsr-subject")
    folder = inbox.path.parent
    assert files_hold(folder, *ID_MARKERS, KEY.encode(), TOKEN.encode()) == []
    with contextlib.closing(sqlite3.connect(inbox.path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert files_hold(folder, *ID_MARKERS) == []
    # ... while the hashes the drain looks up are there.
    assert inbox.get("dsr-2026-0042").record_hashes  # type: ignore[union-attr]


# ---------------------------------------------------------------------- concurrency
def test_threads_accepting_one_request_record_it_once(inbox: Inbox) -> None:
    threads = 12
    barrier = threading.Barrier(threads)
    results: list[str] = []
    lock = threading.Lock()

    def deliver(n: int) -> None:
        request = verified() if n % 2 else by_token()
        barrier.wait(timeout=30)
        status = inbox.accept(request, f"thread-{n}").status
        with lock:
            results.append(status)

    workers = [threading.Thread(target=deliver, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert Counter(results) == {"new": 1, "duplicate": threads - 1}
    [entry] = inbox.entries()
    assert entry.deliveries == threads


def test_threads_accepting_distinct_requests_record_each(inbox: Inbox) -> None:
    barrier = threading.Barrier(8)

    def deliver(n: int) -> None:
        request = verified(request_id=f"dsr-{n}", record_ids=[f"patient-{n}-xyz"])
        barrier.wait(timeout=30)
        inbox.accept(request, "thread")

    workers = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(e.request_id for e in inbox.entries()) == [f"dsr-{n}" for n in range(8)]


class _BusyAtFirst(sqlite3.Connection):
    """A connection that finds the database locked for its first switches to WAL."""

    refusals: ClassVar[list[str]] = []

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if sql == "PRAGMA journal_mode=WAL" and _BusyAtFirst.refusals:
            raise sqlite3.OperationalError(_BusyAtFirst.refusals.pop())
        return super().execute(sql, parameters)


@pytest.mark.parametrize(
    ("refusals", "raised"),
    [(["database is locked"] * 5, None), (["disk I/O error"], "inbox database error")],
)
def test_opening_a_new_inbox_waits_for_another_connection_switching_it_to_wal(
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch, refusals: list[str], raised: str | None
) -> None:
    # Two connections that open a new inbox at once both switch it to WAL; sqlite tells
    # one of them "database is locked" at once, whatever its busy timeout (seen with 8
    # threads in about 1 run in 40): it must wait and try again, not fail the delivery.
    connect = sqlite3.connect
    monkeypatch.setattr(_BusyAtFirst, "refusals", list(refusals))
    monkeypatch.setattr(
        sqlite3, "connect", lambda *args, **kwargs: connect(*args, factory=_BusyAtFirst, **kwargs)
    )
    if raised is None:
        assert inbox.accept(verified(), "test").status == "new"
    else:
        with pytest.raises(StoreError, match=raised):
            inbox.accept(verified(), "test")
    assert _BusyAtFirst.refusals == []


def _accept_in_a_process(path: str, envelopes: list[bytes], barrier: Any, queue: Any) -> None:
    """Run in a child process: verify each envelope, wait for the others, accept them."""
    inbox = Inbox(path, SETTINGS)
    requests = [verify_request(body, SETTINGS, now=NOW) for body in envelopes]
    barrier.wait(timeout=60)
    queue.put([inbox.accept(r, f"process-{os.getpid()}").status for r in requests])


def test_processes_accepting_the_same_requests_record_each_once(tmp_path: Path) -> None:
    processes = 4
    path = tmp_path / "fresh" / "inbox.db"  # created by the processes, all at once
    envelopes = [
        json.dumps(signed({**REQUEST, "request_id": f"dsr-{n}"}, age=n)).encode() for n in range(3)
    ]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    queue = context.Queue()
    children = [
        context.Process(target=_accept_in_a_process, args=(str(path), envelopes, barrier, queue))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    statuses = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    queue.close()
    queue.join_thread()
    # Per request: exactly one process recorded it, the others saw a duplicate.
    for n in range(3):
        assert Counter(s[n] for s in statuses) == {"new": 1, "duplicate": processes - 1}
    inbox = Inbox(path, SETTINGS)
    assert sorted((e.request_id, e.deliveries) for e in inbox.entries()) == [
        (f"dsr-{n}", processes) for n in range(3)
    ]
    assert inbox.counts() == {"pending": 3, "rejected": 0}

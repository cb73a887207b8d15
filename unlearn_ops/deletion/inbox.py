"""The durable inbox: deletion requests recorded before they are acknowledged.

Intakes (the S3/SQS listener, Prefect events, the HTTP endpoint) call :meth:`Inbox.accept`
and acknowledge a delivery (delete the SQS message, answer 202) only after it returns:
the request is then committed to a sqlite database in WAL mode with `synchronous=FULL`.
Delivery is at least once; the effect is exactly once:

- a request id seen before with the same content (:meth:`VerifiedRequest.fingerprint`) is a
  duplicate and changes nothing; with other content it is refused
  (:class:`ReplayedRequestError`), and the first version stands;
- a drain (under the workspace lock) claims every request not finished, so requests that a
  crashed run had claimed are picked up again; the forget pipeline itself is idempotent
  (the ledger and registry say what was served already).

Like the ledger, the inbox never holds a record id: only keyed hashes. Refused deliveries
are kept with their reason (no request content) for the operator.

States: `pending` -> `processing` (claimed by a run) -> `done` (outcome: the model version)
or `failed` (reason), or `held` (under a legal hold, :mod:`unlearn_ops.deletion.holds`,
until :meth:`release_held`). :meth:`retry` puts a failed request back to `pending`.

Why this module is long: one sqlite schema and the transactions over it (accept, claim,
complete, fail, retry, refusals) must be read together to see that each is atomic.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from unlearn_ops.deletion.envelope import VerifiedRequest
from unlearn_ops.errors import ReplayedRequestError, RequestNotFoundError, StoreError
from unlearn_ops.settings import Settings

__all__ = ["Accepted", "Inbox", "InboxEntry", "Rejection"]

State = Literal["pending", "processing", "done", "failed", "held"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    record_hashes TEXT NOT NULL,
    subject_hash TEXT,
    reason TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    authenticated_by TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT,
    claimed_at TEXT,
    outcome TEXT,
    producer TEXT,
    client_hash TEXT
);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    source TEXT NOT NULL,
    request_id TEXT,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    request_id TEXT,
    at TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, waiting out other connections that open a new inbox at the same time.

    Turning a database to WAL needs it alone, and sqlite answers "database is locked" at
    once (its busy timeout does not apply) while another connection does the same.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _add_columns(connection: sqlite3.Connection) -> None:
    """An inbox made before producers had keys (or before client withdrawals) gains the
    `producer` and `client_hash` columns (once)."""
    present = {row[1] for row in connection.execute("PRAGMA table_info(requests)")}
    for column in ("producer", "client_hash"):
        if column in present:
            continue
        try:
            connection.execute(f"ALTER TABLE requests ADD COLUMN {column} TEXT")
        except sqlite3.OperationalError as exc:  # another process added it meanwhile
            if "duplicate column" not in str(exc):
                raise


@dataclass(frozen=True)
class Accepted:
    """What :meth:`Inbox.accept` did: `new` (recorded now) or `duplicate` (seen before)."""

    request_id: str
    status: Literal["new", "duplicate"]
    state: State


@dataclass(frozen=True)
class InboxEntry:
    """One request as the inbox keeps it (keyed hashes, never ids)."""

    request_id: str
    fingerprint: str
    record_hashes: tuple[str, ...]
    subject_hash: str | None
    reason: str
    requested_at: str
    authenticated_by: str
    source: str
    received_at: str
    deliveries: int
    state: State
    attempts: int
    claimed_by: str | None
    outcome: dict[str, Any] | None
    producer: str | None = None  # who vouched for it (None: received before producers)
    client_hash: str | None = None  # a federation client's withdrawal (issue 13)

    @property
    def key_id(self) -> str | None:
        """The id of the key that signed it (None: a bearer token vouched)."""
        kind, _, key_id = self.authenticated_by.partition(":")
        return key_id if kind == "hmac" else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the record hashes are counted, not listed)."""
        return {
            "request_id": self.request_id,
            "records": len(self.record_hashes),
            "subject": self.subject_hash is not None,
            "client": self.client_hash is not None,
            "reason": self.reason,
            "requested_at": self.requested_at,
            "authenticated_by": self.authenticated_by,
            "producer": self.producer,
            "source": self.source,
            "received_at": self.received_at,
            "deliveries": self.deliveries,
            "state": self.state,
            "attempts": self.attempts,
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class Rejection:
    """A delivery that was refused, and why (never its content)."""

    at: str
    source: str
    request_id: str | None
    kind: str
    reason: str


def _entry(row: sqlite3.Row) -> InboxEntry:
    return InboxEntry(
        request_id=row["request_id"],
        fingerprint=row["fingerprint"],
        record_hashes=tuple(json.loads(row["record_hashes"])),
        subject_hash=row["subject_hash"],
        reason=row["reason"],
        requested_at=row["requested_at"],
        authenticated_by=row["authenticated_by"],
        source=row["source"],
        received_at=row["received_at"],
        deliveries=row["deliveries"],
        state=row["state"],
        attempts=row["attempts"],
        claimed_by=row["claimed_by"],
        outcome=None if row["outcome"] is None else json.loads(row["outcome"]),
        producer=row["producer"],
        client_hash=row["client_hash"],
    )


class Inbox:
    """The inbox database at `path` (created on first use; parent folders too).

    Every method is one short transaction; several processes may use one inbox at once
    (sqlite serialises the writers; `BEGIN IMMEDIATE` makes read-then-write atomic).
    """

    def __init__(self, path: str | Path, settings: Settings) -> None:
        self.path = Path(path)
        self.settings = settings
        self._ready = False  # WAL mode and the tables exist (checked once per instance)

    def __repr__(self) -> str:
        return f"Inbox({str(self.path)!r})"

    @contextlib.contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; a writing one takes sqlite's write lock at once (`IMMEDIATE`)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(self.path, f"cannot open the inbox ({exc})") from exc
        try:
            connection.row_factory = sqlite3.Row
            if not self._ready:
                _use_wal(connection, 60.0)  # kept by the file: once is enough
                connection.executescript(_SCHEMA)
                _add_columns(connection)
                self._ready = True
            connection.execute("PRAGMA synchronous=FULL")  # per connection
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(self.path, f"inbox database error ({exc})") from exc
        finally:
            connection.close()

    # ------------------------------------------------------------------ intake
    def accept(
        self, request: VerifiedRequest, source: str, delivery_id: str | None = None
    ) -> Accepted:
        """Record a verified request; durable when this returns.

        Args:
            request: a request that passed :func:`unlearn_ops.deletion.envelope.verify_request`.
            source: where it came from (`s3://bucket/key`, `prefect-event:<id>`, `http`).
            delivery_id: the transport's id of this delivery (an event id), remembered so
                that the same delivery is recognised without verifying it again.

        Raises:
            ReplayedRequestError: the id arrived before with other content (the refusal is
                recorded; the first request stands).
        """
        fingerprint = request.fingerprint(self.settings)
        with self._transaction() as db:
            row = db.execute(
                "SELECT fingerprint, state FROM requests WHERE request_id = ?",
                (request.request_id,),
            ).fetchone()
            if delivery_id is not None:
                db.execute(
                    "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?)",
                    (delivery_id, request.request_id, _now()),
                )
            if row is None:
                body = request.body
                db.execute(
                    "INSERT INTO requests (request_id, fingerprint, record_hashes, subject_hash,"
                    " reason, requested_at, authenticated_by, source, received_at, state, producer,"
                    " client_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (
                        request.request_id,
                        fingerprint,
                        json.dumps(request.record_hashes(self.settings)),
                        request.subject_hash(self.settings),
                        body.reason,
                        body.requested_at.astimezone(UTC).isoformat(),
                        request.authenticated_by,
                        source,
                        _now(),
                        request.producer,
                        request.client_hash(self.settings),
                    ),
                )
                return Accepted(request.request_id, "new", "pending")
            if row["fingerprint"] != fingerprint:
                error = ReplayedRequestError(request.request_id)
                self._reject(db, source, request.request_id, "replayed-with-changes", str(error))
                replay = error
            else:
                db.execute(
                    "UPDATE requests SET deliveries = deliveries + 1 WHERE request_id = ?",
                    (request.request_id,),
                )
                return Accepted(request.request_id, "duplicate", row["state"])
        raise replay

    def seen_delivery(self, delivery_id: str) -> bool:
        """Whether a delivery with this transport id was accepted or refused before."""
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT 1 FROM deliveries WHERE delivery_id = ?", (delivery_id,)
            ).fetchone()
        return row is not None

    def reject(
        self,
        source: str,
        kind: str,
        reason: str,
        request_id: str | None = None,
        delivery_id: str | None = None,
    ) -> Rejection:
        """Record a refused delivery: where from, which kind of refusal, and why."""
        with self._transaction() as db:
            if delivery_id is not None:
                db.execute(
                    "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?)",
                    (delivery_id, request_id, _now()),
                )
            return self._reject(db, source, request_id, kind, reason)

    @staticmethod
    def _reject(
        db: sqlite3.Connection, source: str, request_id: str | None, kind: str, reason: str
    ) -> Rejection:
        at = _now()
        db.execute(
            "INSERT INTO rejections (at, source, request_id, kind, reason) VALUES (?, ?, ?, ?, ?)",
            (at, source, request_id, kind, reason[:1000]),
        )
        return Rejection(at, source, request_id, kind, reason[:1000])

    # ------------------------------------------------------------------ processing
    def claim(self, run: str) -> list[InboxEntry]:
        """Claim every request not finished (pending, or processing by a crashed run).

        Call it holding the workspace lock: then no live run is processing anything.
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE requests SET state = 'processing', claimed_by = ?, claimed_at = ?,"
                " attempts = attempts + 1 WHERE state IN ('pending', 'processing')",
                (run, _now()),
            )
            rows = db.execute(
                "SELECT * FROM requests WHERE state = 'processing' AND claimed_by = ?"
                " ORDER BY received_at, request_id",
                (run,),
            ).fetchall()
        return [_entry(row) for row in rows]

    def complete(self, request_ids: Sequence[str], outcome: dict[str, Any]) -> None:
        """Mark requests done with their outcome (the version that serves them)."""
        self._finish(request_ids, "done", outcome)

    def fail(self, request_ids: Sequence[str], reason: str) -> None:
        """Mark requests failed with the reason."""
        self._finish(request_ids, "failed", {"reason": reason[:1000]})

    def hold(self, request_ids: Sequence[str], outcome: dict[str, Any]) -> None:
        """Set requests aside under a legal hold (a claim skips them) with the hold's reason."""
        self._finish(request_ids, "held", outcome)

    def release_held(self, request_ids: Sequence[str]) -> list[str]:
        """Put held requests back to `pending`; the ids the inbox held (others are not its)."""
        if not self.path.exists():
            return []
        with self._transaction() as db:
            released = [
                r
                for r in request_ids
                if db.execute(
                    "UPDATE requests SET state = 'pending', outcome = NULL"
                    " WHERE request_id = ? AND state = 'held'",
                    (r,),
                ).rowcount
            ]
        return released

    def _finish(self, request_ids: Sequence[str], state: State, outcome: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE requests SET state = ?, outcome = ? WHERE request_id = ?",
                [(state, json.dumps(outcome, sort_keys=True), r) for r in request_ids],
            )

    def retry(self, request_id: str) -> InboxEntry:
        """Put a failed request back to pending (after its cause was fixed).

        Raises:
            RequestNotFoundError: the inbox never received it.
            ReplayedRequestError: never; listed for symmetry with accept.
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE requests SET state = 'pending', outcome = NULL"
                " WHERE request_id = ? AND state = 'failed'",
                (request_id,),
            )
            row = db.execute(
                "SELECT * FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        if row is None:
            raise RequestNotFoundError(
                request_id, self.path, [e.request_id for e in self.entries()]
            )
        return _entry(row)

    # ------------------------------------------------------------------ reading
    def entries(self, state: State | None = None) -> list[InboxEntry]:
        """Requests in arrival order (only those in `state` if given)."""
        if not self.path.exists():
            return []
        with self._transaction(write=False) as db:
            if state is None:
                rows = db.execute("SELECT * FROM requests ORDER BY received_at, request_id")
            else:
                rows = db.execute(
                    "SELECT * FROM requests WHERE state = ? ORDER BY received_at, request_id",
                    (state,),
                )
            return [_entry(row) for row in rows.fetchall()]

    def get(self, request_id: str) -> InboxEntry | None:
        """One request, or None."""
        if not self.path.exists():
            return None
        with self._transaction(write=False) as db:
            row = db.execute(
                "SELECT * FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else _entry(row)

    def rejections(self) -> list[Rejection]:
        """Refused deliveries, oldest first."""
        if not self.path.exists():
            return []
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT at, source, request_id, kind, reason FROM rejections ORDER BY id"
            ).fetchall()
        return [Rejection(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        """How many requests are in each state, and how many deliveries were refused."""
        if not self.path.exists():
            return {}
        with self._transaction(write=False) as db:
            counts = {
                row[0]: row[1]
                for row in db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state")
            }
            counts["rejected"] = db.execute("SELECT COUNT(*) FROM rejections").fetchone()[0]
        return counts

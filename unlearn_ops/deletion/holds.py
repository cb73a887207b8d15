"""Legal holds: records that must not be erased yet (GDPR art. 17(3) b and e), kept in the ledger.

A data-protection officer places a hold on records (by id), on a data subject, or on a
federation's site (a client, issue 13), with a reason and optionally an end date; while it
stands, a deletion request naming any of those records is not executed for them
(:func:`unlearn_ops.workflow.batch.hold_back`): the ledger says `held` with the hold's
reason, and the request waits (`compliance.holds: whole`, the default) or proceeds without
the held records (`partial`). A site's withdrawal under a hold waits whole
(:mod:`unlearn_ops.workflow.federated_holds`). Releasing the hold (or its end
date passing) queues again what it held: requests of the inbox go back to `pending` and the
next drain serves them; a request made with `unlearn-ops forget` is named, to be run again.

Like everything else, a hold keeps keyed hashes only (records, the subject, or the site).
It lives in the ledger itself: `hold-added` and `hold-released` entries under the hold's
id carry who (`actor`), when and why, in the same hash chain as the requests they hold
back, so the record of holds cannot be edited apart from the record of erasures.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from unlearn_ops.deletion.ledger import LedgerEntry
from unlearn_ops.errors import HoldError as HoldError  # its home is errors.py
from unlearn_ops.sisa.hashing import canonical_id

if TYPE_CHECKING:
    from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "Hold",
    "HoldError",
    "Release",
    "current_actor",
    "find_held",
    "fold_holds",
    "held_request_ids",
    "paused_clock",
    "place_hold",
    "release_expired",
    "release_hold",
]

HoldStatus = Literal["active", "released", "expired"]
EXPIRY_ACTOR = "unlearn-ops (end date reached)"


@dataclass(frozen=True)
class Hold:
    """One legal hold as the ledger records it (keyed hashes, never ids).

    Attributes:
        hold_id: its id (`hold-` and 12 hex digits).
        record_hashes: keyed hashes of the held records (empty for a subject hold).
        subject_hash: keyed hash of the held data subject, or None.
        client_hash: keyed hash of the held federation client (`client:<id>`), or None.
        reason: why (the legal ground), shown wherever a request waits for it.
        actor: who placed it.
        placed_at: when (ISO 8601, UTC).
        until: when it ends by itself, or None.
        released_at, released_by, release_reason: its release, once released.
    """

    hold_id: str
    record_hashes: tuple[str, ...]
    subject_hash: str | None
    reason: str
    actor: str
    placed_at: str
    until: datetime | None = None
    client_hash: str | None = None
    released_at: str | None = None
    released_by: str | None = None
    release_reason: str | None = None

    def status(self, now: datetime) -> HoldStatus:
        """`active`, `released`, or `expired` (its end date passed, not yet released)."""
        if self.released_at is not None:
            return "released"
        if self.until is not None and now >= self.until:
            return "expired"
        return "active"

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """A JSON-ready view (keyed hashes counted, not listed)."""
        return {
            "hold_id": self.hold_id,
            "status": self.status(now or datetime.now(UTC)),
            "records": len(self.record_hashes),
            "subject": self.subject_hash is not None,
            "client": self.client_hash is not None,
            "reason": self.reason,
            "placed_by": self.actor,
            "placed_at": self.placed_at,
            "until": self.until.isoformat() if self.until else None,
            "released_at": self.released_at,
            "released_by": self.released_by,
            "release_reason": self.release_reason,
        }


@dataclass(frozen=True)
class Release:
    """What releasing a hold did.

    Attributes:
        hold: the hold, as released.
        queued: inbox requests put back to `pending` (the next drain serves them).
        rerun: requests held that the inbox does not hold (made with `unlearn-ops forget`):
            run them again.
        still_held: requests it held that another active hold still holds.
    """

    hold: Hold
    queued: list[str] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)
    still_held: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            **self.hold.to_dict(),
            "queued": self.queued,
            "rerun": self.rerun,
            "still_held": self.still_held,
        }


def current_actor() -> str:
    """Who runs this process (the OS user): the default `--actor` of hold changes."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return "unknown"


def fold_holds(entries: Iterable[LedgerEntry]) -> dict[str, Hold]:
    """Every hold the ledger records, by id, as of its newest entry."""
    holds: dict[str, Hold] = {}
    for entry in entries:
        data = entry.data
        if entry.event == "hold-added":
            until = data.get("until")
            holds[entry.request_id] = Hold(
                hold_id=entry.request_id,
                record_hashes=tuple(data.get("record_hashes", [])),
                subject_hash=data.get("subject_hash"),
                client_hash=data.get("client_hash"),
                reason=str(data.get("reason", "")),
                actor=str(data.get("actor", "")),
                placed_at=entry.at,
                until=datetime.fromisoformat(until) if until else None,
            )
        elif entry.event == "hold-released" and entry.request_id in holds:
            hold = holds[entry.request_id]
            holds[entry.request_id] = Hold(
                **{
                    **hold.__dict__,
                    "released_at": entry.at,
                    "released_by": str(data.get("actor", "")),
                    "release_reason": str(data.get("reason", "")),
                }
            )
    return holds


def _parse_until(until: datetime | str | None, now: datetime) -> datetime | None:
    if until is None:
        return None
    if isinstance(until, str):
        try:
            until = datetime.fromisoformat(until)
        except ValueError as exc:
            raise HoldError(
                f"--until {until!r} is not a date", "give YYYY-MM-DD or an ISO 8601 time"
            ) from exc
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    if until <= now:
        raise HoldError(f"--until {until.isoformat()} is not in the future")
    return until


def place_hold(
    ws: Workspace,
    *,
    record_ids: Sequence[object] = (),
    subject: str | None = None,
    client: str | None = None,
    reason: str,
    until: datetime | str | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> Hold:
    """Hold records, a data subject's records or a federation's site back from erasure.

    A `hold-added` entry. Call it holding the workspace lock (the CLI does), so it never
    interleaves with a drain's ledger entries.

    Raises:
        HoldError: not exactly one of records, subject and client; no reason; an end in
            the past.
        UnknownRecordsError: an id the data never held (nothing is written).
        InvalidRequestError: a client that is not an active member of the federation.
        FederationError: a client named where there is no federation.
    """
    now = now or datetime.now(UTC)
    if sum((bool(record_ids), subject is not None, client is not None)) != 1:
        raise HoldError(
            "name the records (--ids), a data subject (--subject) or a site (--client), one of them"
        )
    if not reason.strip():
        raise HoldError("a reason is required", "say the legal ground, e.g. 'litigation 2026-17'")
    end = _parse_until(until, now)
    if record_ids:
        # A mistyped id would hold nothing and say nothing: refuse ids the data never held.
        ws.ensemble.plan_forget(list(record_ids))
    settings = ws.settings
    hashes = sorted({settings.hash_record_id(canonical_id(r)) for r in record_ids})
    subject_hash = settings.hash_subject_id(canonical_id(subject)) if subject is not None else None
    client_hash = None
    if client is not None:
        from unlearn_ops.workflow.federated import active_member

        client_hash = active_member(ws, client)
    hold_id = f"hold-{uuid.uuid4().hex[:12]}"
    entry = ws.ledger.append(
        "hold-added",
        hold_id,
        record_hashes=hashes,
        subject_hash=subject_hash,
        **({"client_hash": client_hash} if client_hash is not None else {}),
        reason=reason,
        actor=actor or current_actor(),
        until=end.isoformat() if end else None,
    )
    return fold_holds([entry])[hold_id]


def _held_hashes(ws: Workspace, hold: Hold) -> set[str]:
    if hold.client_hash is not None:  # `client:`-keyed: never equal to a record's hash
        return {hold.client_hash}
    if hold.subject_hash is None:
        return set(hold.record_hashes)
    from unlearn_ops.deletion.intake import read_subject_index

    return set(read_subject_index(ws.root).get(hold.subject_hash, []))


def find_held(
    ws: Workspace, hashes_by_request: Mapping[str, Sequence[str]], now: datetime | None = None
) -> dict[str, dict[str, list[str]]]:
    """For each request naming records under an active hold: hold id -> its held hashes.

    Args:
        ws: the workspace (its ledger and, for subject holds, `subjects.json`).
        hashes_by_request: request id -> keyed hashes of its records (of its client, for a
            withdrawal).
        now: the time holds are judged at (an expired hold holds nothing).
    """
    now = now or datetime.now(UTC)
    active = [h for h in fold_holds(ws.ledger.entries()).values() if h.status(now) == "active"]
    if not active:
        return {}
    held_by = {hold.hold_id: _held_hashes(ws, hold) for hold in active}
    found: dict[str, dict[str, list[str]]] = {}
    for request_id, hashes in hashes_by_request.items():
        for hold_id, held in held_by.items():
            overlap = sorted(held.intersection(hashes))
            if overlap:
                found.setdefault(request_id, {})[hold_id] = overlap
    return found


def held_request_ids(ws: Workspace) -> dict[str, list[str]]:
    """Requests the ledger says are `held` now (not since queued again) -> their hold ids."""
    states = ws.ledger.requests()
    return {
        request_id: sorted({h for held in state.holds for h in held.get("holds", [])})
        for request_id, state in states.items()
        if state.state == "held"
    }


def release_hold(
    ws: Workspace,
    hold_id: str,
    *,
    reason: str = "",
    actor: str | None = None,
    now: datetime | None = None,
) -> Release:
    """Release a hold: a `hold-released` entry, and what it held queued again.

    A request it held that no other active hold holds goes back to `pending` in the inbox
    (or, made with `unlearn-ops forget`, is named to run again); the entry lists them, so
    the ledger shows each request's clock running again from then. Call it holding the
    workspace lock.

    Raises:
        HoldError: no such hold, or released already.
    """
    now = now or datetime.now(UTC)
    holds = fold_holds(ws.ledger.entries())
    hold = holds.get(hold_id)
    if hold is None:
        known = ", ".join(sorted(holds)[:5]) or "none"
        hint = f"known holds: {known} (see `unlearn-ops hold list`)"
        raise HoldError(f"no hold {hold_id!r}", hint)
    if hold.released_at is not None:
        raise HoldError(f"{hold_id} was released already, at {hold.released_at}")
    return _release(ws, hold, holds, reason, actor or current_actor(), now)


def _release(
    ws: Workspace, hold: Hold, holds: Mapping[str, Hold], reason: str, actor: str, now: datetime
) -> Release:
    others = {
        h.hold_id for h in holds.values() if h.hold_id != hold.hold_id and h.status(now) == "active"
    }
    freed, still = [], []
    for request_id, hold_ids in held_request_ids(ws).items():
        if hold.hold_id not in hold_ids:
            continue
        if others.intersection(hold_ids):
            still.append(request_id)
        else:
            freed.append(request_id)
    entry = ws.ledger.append(
        "hold-released", hold.hold_id, reason=reason, actor=actor, requests=freed
    )
    queued = ws.inbox.release_held(freed)
    released = Hold(
        **{
            **hold.__dict__,
            "released_at": entry.at,
            "released_by": actor,
            "release_reason": reason,
        }
    )
    rerun = [r for r in freed if r not in queued]
    return Release(released, queued=queued, rerun=rerun, still_held=still)


def release_expired(ws: Workspace, now: datetime | None = None) -> list[Release]:
    """Release every hold whose end date has passed (a drain does it before each claim).

    Call it holding the workspace lock.
    """
    now = now or datetime.now(UTC)
    holds = fold_holds(ws.ledger.entries())
    releases = []
    for hold in holds.values():
        if hold.status(now) == "expired":
            reason = f"end date {hold.until.isoformat() if hold.until else ''} reached"
            releases.append(_release(ws, hold, holds, reason, EXPIRY_ACTOR, now))
            holds = fold_holds(ws.ledger.entries())
    return releases


def paused_clock(
    periods: Sequence[Mapping[str, Any]], now: datetime
) -> tuple[timedelta, str | None]:
    """How long a request's deadline clock was paused by holds, and why it is paused now.

    Args:
        periods: its `held` periods as the ledger folds them (`at`, `released_at` or None,
            `holds`, `reasons`): :attr:`RequestState.holds`.
        now: the end of a period still open.

    Returns:
        The paused time (overlapping periods counted once), and the reason of the hold
        standing now (`hold-...: reason`), or None when the clock runs.
    """
    spans = []
    current = None
    for period in periods:
        start = datetime.fromisoformat(str(period["at"]))
        end_at = period.get("released_at")
        end = datetime.fromisoformat(str(end_at)) if end_at else now
        spans.append((start, max(start, end)))
        if not end_at:
            pairs = zip(period.get("holds", []), period.get("reasons", []), strict=False)
            current = "; ".join(f"{hold}: {why}" for hold, why in pairs)
    paused = timedelta(0)
    reach: datetime | None = None
    for start, end in sorted(spans):
        if reach is not None and start < reach:
            start = reach
        if end > start:
            paused += end - start
        reach = end if reach is None else max(reach, end)
    return paused, current

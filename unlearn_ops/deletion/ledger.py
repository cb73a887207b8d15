"""The request ledger: an append-only, hash-chained JSONL file of what happened to each request.

States of a request: `received` -> `applied` (data revision) -> `served` (model version;
in a monolithic workspace first `approximate`, by a provisional version, then by the exact
retrain: a second `served` entry) -> `purged` (superseded artifacts that still held its
records deleted), or `failed` (reason). A request that names records under a legal hold
is `held` until the hold is released (then `received` again, queued); `approval` entries
say who decided about it, by which rule. Legal holds themselves are entries under their
own id (`hold-added`, `hold-released`: who, when, why), folded by
:mod:`unlearn_ops.deletion.holds`. Record ids are personal data: entries hold only their
keyed hashes.

Entries keep what was true when they were written, because the stores they describe do
not last: `received` names the shards that removing the records will retrain (so a run
killed half-way is still accounted for), `served` and `failed` carry the facts of their
version (gates, shards retrained, data revision) and `purged` those of the versions it
deleted (issue 11, findings 3 and 7). Ledgers written before these fields still read.
Each entry carries the SHA-256 of the previous line, so an edited or removed entry breaks
the chain (:meth:`Ledger.verify_chain`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from unlearn_ops.canonical import canonical_text
from unlearn_ops.errors import StoreError

__all__ = ["GENESIS", "HOLD_EVENTS", "Ledger", "LedgerEntry", "RequestState"]

GENESIS = "0" * 64

Event = Literal[
    "received",
    "applied",
    "served",
    "failed",
    "purged",
    # Legal holds and approvals (issue 16): `held` and `approval` are a request's; a
    # hold's own changes are entries under the hold's id, which no request ever has.
    "held",
    "approval",
    "hold-added",
    "hold-released",
]
HOLD_EVENTS: frozenset[str] = frozenset({"hold-added", "hold-released"})
EVENTS: frozenset[str] = frozenset(get_args(Event))


@dataclass(frozen=True)
class LedgerEntry:
    """One line of the ledger."""

    seq: int
    event: Event
    request_id: str
    at: str
    previous: str
    data: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The entry's fields, as hashed and written."""
        # `asdict`, not `json_ready`: the hashed body keeps `data`'s values exactly as given.
        return asdict(self)

    def to_line(self) -> str:
        """The entry as one canonical JSON line (sorted keys) with its own hash, no newline."""
        body = self.body()
        return canonical_text({**body, "hash": _entry_hash(body)}, ascii_only=True)


def _entry_hash(body: dict[str, Any]) -> str:
    """SHA-256 of an entry's canonical body: an edit of any entry, the newest too, shows."""
    return hashlib.sha256(canonical_text(body, ascii_only=True).encode()).hexdigest()


@dataclass
class RequestState:
    """What the ledger says about one request.

    `planned_shards` is shard -> first slice that removing its records retrains, as its
    `received` entry recorded (empty in ledgers older than that field). `holds` lists the
    times a legal hold kept it back (`at`, `holds`, `reasons`, and `released_at` once
    every hold naming it was lifted); `approvals` the approval decisions about it.
    """

    request_id: str
    record_hashes: list[str] = field(default_factory=list)
    state: Event = "received"
    received_at: str = ""
    applied: dict[str, Any] | None = None
    served: dict[str, Any] | None = None
    purged: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    planned_shards: dict[int, int] = field(default_factory=dict)
    holds: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def approximate(self) -> bool:
        """Served only by a provisional (approximate) version so far (issue 14)."""
        return bool(self.served and self.served.get("approximate"))

    @property
    def display_state(self) -> str:
        """The state in words: `served (approximate)` until the exact retrain is served."""
        return "served (approximate)" if self.state == "served" and self.approximate else self.state


def _planned_shards(value: object) -> dict[int, int]:
    """Shard -> first slice, from a `received` entry's `retrains` (absent before it existed)."""
    if not isinstance(value, dict):
        return {}
    planned = {}
    for shard, first in value.items():
        try:
            planned[int(shard)] = int(first)
        except (TypeError, ValueError):
            continue
    return planned


def _fold_release(entry: LedgerEntry, states: dict[str, RequestState]) -> None:
    """A `hold-released` entry lifts the holds of the requests it queued again."""
    if entry.event != "hold-released":
        return
    for request_id in entry.data.get("requests", []):
        state = states.get(str(request_id))
        if state is None:
            continue
        for held in state.holds:
            if held["released_at"] is None:
                held["released_at"] = entry.at
        if state.state == "held":
            state.state = "received"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Ledger:
    """The ledger file of a workspace. Construction does no I/O.

    Appends are one `write` of one line followed by `fsync`, so a crash leaves either the
    whole entry or none of it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    def entries(self) -> Iterator[LedgerEntry]:
        """Every entry, in order.

        Raises:
            StoreError: a line is not a valid entry.
        """
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                if raw["event"] not in EVENTS:
                    raise ValueError(f"unknown event {raw['event']!r}")
                yield LedgerEntry(
                    seq=int(raw["seq"]),
                    event=raw["event"],
                    request_id=str(raw["request_id"]),
                    at=str(raw["at"]),
                    previous=str(raw["previous"]),
                    data=dict(raw.get("data", {})),
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise StoreError(self.path, f"line {number} is not a ledger entry ({exc})") from exc

    def _tail(self) -> tuple[int, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0, GENESIS
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            return 0, GENESIS
        last = json.loads(lines[-1])
        return int(last["seq"]) + 1, hashlib.sha256(lines[-1].encode()).hexdigest()

    def append(self, event: Event, request_id: str, **data: Any) -> LedgerEntry:
        """Append one entry and flush it to disk."""
        seq, previous = self._tail()
        entry = LedgerEntry(seq, event, request_id, _now(), previous, data)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(entry.to_line() + "\n")
            file.flush()
            os.fsync(file.fileno())
        return entry

    def verify_chain(self) -> list[str]:
        """Problems found in the hash chain; empty when intact.

        Each line must carry the hash of its own body (an edited entry shows, the newest
        too) and the SHA-256 of the line before it (a removed, inserted or reordered entry
        shows). Removing entries from the end shows only against a head hash kept
        elsewhere (:meth:`head`).
        """
        problems = []
        previous = GENESIS
        expected_seq = 0
        try:
            lines = [
                line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        except FileNotFoundError:
            return []
        for number, line in enumerate(lines, start=1):
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                raw = None
            if not isinstance(raw, dict):
                problems.append(f"line {number}: not a ledger entry")
            else:
                body = {key: value for key, value in raw.items() if key != "hash"}
                if raw.get("hash") != _entry_hash(body):
                    problems.append(f"line {number}: its content does not match its hash")
                if raw.get("previous") != previous:
                    problems.append(f"line {number}: does not chain to the line before it")
                seq = raw.get("seq")
                if seq != expected_seq:
                    problems.append(f"line {number}: sequence {seq!r}, expected {expected_seq}")
                if isinstance(seq, int) and not isinstance(seq, bool):
                    expected_seq = seq
            expected_seq += 1
            previous = hashlib.sha256(line.encode()).hexdigest()
        return problems

    def head(self) -> str:
        """SHA-256 of the newest line (GENESIS when empty): what the next entry chains to."""
        return self._tail()[1]

    def requests(self) -> dict[str, RequestState]:
        """The state of every request, folded from the entries."""
        states: dict[str, RequestState] = {}
        for entry in self.entries():
            if entry.event in HOLD_EVENTS:
                _fold_release(entry, states)
                continue
            state = states.setdefault(entry.request_id, RequestState(entry.request_id))
            if entry.event == "held":
                state.holds.append({**entry.data, "at": entry.at, "released_at": None})
                if state.state not in ("served", "purged"):
                    state.state = "held"
            elif entry.event == "approval":
                state.approvals.append({**entry.data, "at": entry.at})
            elif entry.event == "received":
                state.record_hashes = list(entry.data.get("record_hashes", []))
                state.received_at = entry.at
                state.planned_shards = _planned_shards(entry.data.get("retrains"))
                state.state = "received"
            elif entry.event == "applied":
                state.applied = {**entry.data, "at": entry.at}
                state.state = "applied"
            elif entry.event == "served":
                state.served = {**entry.data, "at": entry.at}
                state.state = "served"
            elif entry.event == "purged":
                state.purged = {**entry.data, "at": entry.at}
                state.state = "purged"
            else:
                state.failures.append({**entry.data, "at": entry.at})
                if state.state not in ("served", "purged"):
                    state.state = "failed"
        return states

    def interrupted(
        self, request_ids: Sequence[str], forgotten: Collection[str]
    ) -> dict[str, RequestState]:
        """Requests of `request_ids` that a run began and did not finish serving.

        The ledger received them (or a version of theirs failed its gates), no version
        was served for them, and every one of their records is gone from the data already
        (`forgotten`: the keyed hashes in `forgotten.json`): a run removed them, then was
        killed or failed before `champion` honoured them. Running them again resumes.
        """
        states = self.requests()
        found = {}
        for request_id in request_ids:
            state = states.get(request_id)
            if (
                state is not None
                and state.served is None
                and state.state != "purged"
                and state.record_hashes
                and set(state.record_hashes) <= set(forgotten)
            ):
                found[request_id] = state
        return found

    def purged_versions(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """The model versions purges deleted: version -> (when, the requests they held)."""
        found: dict[str, tuple[str, tuple[str, ...]]] = {}
        for entry in self.entries():
            if entry.event != "purged":
                continue
            for version in entry.data.get("versions", []):
                at, requests = found.get(str(version), (entry.at, ()))
                found[str(version)] = (at, (*requests, entry.request_id))
        return found

    def request(self, request_id: str) -> RequestState | None:
        """One request's state, or None if the ledger never received it."""
        return self.requests().get(request_id)

    def serving_requests(self, record_hashes: Sequence[str]) -> dict[str, RequestState]:
        """For each record hash, the served request that forgot it (hashes never served omitted)."""
        wanted = set(record_hashes)
        found: dict[str, RequestState] = {}
        for state in self.requests().values():
            if state.served is None:
                continue
            for record_hash in wanted.intersection(state.record_hashes):
                found.setdefault(record_hash, state)
        return found

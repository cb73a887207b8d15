"""The audit of one deletion request: its life from arrival to purge, from ledger and registry.

A request is received (the ledger keeps when, why, when the person asked and the keyed
hashes of its records, never the ids), applied (a data revision without its records),
honoured by a first model version, served when that version became `champion`, and purged
once the superseded versions that still hold its records are deleted after the retention
window. The legal deadline runs from `requested_at` to the time the first honouring version
was served (`compliance.deadline_days`).

Versions do not last (a purge deletes those that still hold forgotten records), so the
audit takes what the registry holds and, for versions it no longer holds, what the ledger
recorded of them when they were served, failed or purged (:func:`recorded_versions`):
the first honouring version stays the one that was, "purged on DATE" (issue 11, finding 3).

:func:`build_audit` is pure: it reads ledger entries and version records given to it.
:func:`audit_request` and :func:`audit_requests` gather those from a workspace (the ledger,
the MLflow registry, git) and, on request, run the exactness certificate of the version.

Why this module is long: :func:`build_audit` and the :class:`RequestAudit` it fills describe one
request's whole life (received, applied, honoured, served, purged, deadline); the version
facts it reads from the ledger live in :mod:`unlearn_ops.serving.records` and its text in
:mod:`unlearn_ops.compliance.audit_text`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from unlearn_ops.deletion.holds import paused_clock
from unlearn_ops.deletion.ledger import Ledger, LedgerEntry, RequestState
from unlearn_ops.errors import RequestNotFoundError
from unlearn_ops.serving.records import (
    GateSummary,
    RecordedVersion,
    gate_summaries,
    recorded_versions,
    shards_retrained,
    version_facts,
    version_number,
)
from unlearn_ops.serving.versions import CHAMPION as CHAMPION_ALIAS
from unlearn_ops.timestamps import parse_datetime_or_none
from unlearn_ops.workflow.approx_tags import approximate_requests

if TYPE_CHECKING:
    from unlearn_ops.params import ComplianceParams
    from unlearn_ops.serving.versions import VersionInfo
    from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "ChainStatus",
    "DeadlineStatus",
    "GateSummary",
    "RecordedVersion",
    "RequestAudit",
    "audit_request",
    "audit_requests",
    "build_audit",
    "champion_of",
    "check_chain",
    "covering_requests",
    "first_honouring",
    "gate_summaries",
    "parse_time",
    "received_entries",
    "recorded_versions",
    "version_facts",
]

DeadlineStatus = Literal["met", "missed", "pending", "paused"]


@dataclass(frozen=True)
class RequestAudit:
    """What is known about one deletion request, from the ledger and the registry.

    Times are timezone-aware (UTC when the source had no zone). None means "not yet" or
    "not known"; the ledger never holds raw record ids, so neither does an audit.

    Attributes:
        request_id: the request.
        state: its ledger state (`received`, `applied`, `served`, `failed`, `purged`).
        received_at: when the ledger received it.
        requested_at: when the person asked (the deadline runs from here).
        reason: the reason given.
        record_count: how many records it names.
        records_digest: SHA-256 over the sorted keyed hashes of its records (a fingerprint
            that matches the ledger without revealing ids).
        validated: the request passed validation when received (schema, size, id).
        signature: what the ledger says about the sender's signature (None: not checked).
        applied_at: when its records left the training data.
        data_revision: the git commit of that data revision.
        parent_revision: the commit before it (the data that still held the records).
        data_md5: DVC's md5 of the shard folder at `data_revision`.
        versions_made_for: versions registered for it (a failed gate and its rerun: two).
        shards_retrained: shard -> first slice retrained, over `versions_made_for`.
        noop: served without a data change of its own (its records were forgotten before).
        first_honouring_version: the first version whose gates passed and that honours it.
        first_honouring_created_at: when that version was registered.
        first_exact_version: the first version that honours it exactly: the first
            honouring one, unless that is a provisional version (issue 14), which honours
            it only approximately; what `--certify` and the receipt name.
        gates: that version's gate verdicts.
        served_version: the version the ledger says was served for it.
        served_at: when that version became `champion` (the ledger's `served` entry).
        exactness: the exactness certificate of the first honouring version (None: not run).
        champion_version: the version `champion` points at now.
        champion_honours: whether the current champion honours the request.
        purged_at: when superseded artifacts holding its records were purged.
        purge: what the ledger's `purged` entry records.
        retention_until: until when superseded artifacts may be kept (served_at + retention).
        deadline: requested_at + `compliance.deadline_days`, plus the time a legal hold
            paused the clock (GDPR art. 17(3): no duty to erase while it stands).
        latency_days: days from requested_at to served_at.
        deadline_status: `met`, `missed`, `pending` (not served, deadline ahead), or
            `paused` (a legal hold stands).
        failures: the ledger's `failed` entries (gate summaries, unpromoted versions).
        ledger_problems: problems in the ledger's hash chain (empty: intact).
        versions_purged: when each version named above that the registry no longer holds
            was purged (per the ledger's `purged` entries).
        privacy: the membership audit of the version made for it (its `unlearn.privacy.*`
            tags, short keys, and `version`); empty when none was audited.
        holds: the times legal holds kept it back (`at`, `released_at`, `holds`, `reasons`).
        paused_days: how long they paused its deadline clock.
        paused_reason: the hold standing now (`hold-...: reason`), or None.
        approvals: the approval decisions about it (decision, rule, approver, reason).
        client_hashes: for a federation client's removal (issue 13), the keyed hashes of
            the clients it removes (a record request: empty).
        approximate: while only a provisional version serves it (issue 14): that version,
            its method and when it was served; `served_at` then stays None, because the
            deadline waits for the exact retrain. None otherwise.
    """

    request_id: str
    state: str
    received_at: datetime
    requested_at: datetime
    reason: str
    record_count: int
    records_digest: str
    validated: bool
    signature: str | None
    applied_at: datetime | None
    data_revision: str | None
    parent_revision: str | None
    data_md5: str | None
    versions_made_for: tuple[str, ...]
    shards_retrained: Mapping[int, int]
    noop: bool
    first_honouring_version: str | None
    first_honouring_created_at: datetime | None
    gates: tuple[GateSummary, ...]
    served_version: str | None
    served_at: datetime | None
    exactness: bool | None
    champion_version: str | None
    champion_honours: bool
    purged_at: datetime | None
    purge: Mapping[str, Any]
    retention_until: datetime | None
    deadline: datetime
    latency_days: float | None
    deadline_status: DeadlineStatus
    failures: tuple[Mapping[str, Any], ...] = ()
    ledger_problems: tuple[str, ...] = field(default=())
    versions_purged: Mapping[str, datetime] = field(default_factory=dict)
    privacy: Mapping[str, str] = field(default_factory=dict)
    holds: tuple[Mapping[str, Any], ...] = ()
    paused_days: float = 0.0
    paused_reason: str | None = None
    approvals: tuple[Mapping[str, Any], ...] = ()
    client_hashes: tuple[str, ...] = ()
    approximate: Mapping[str, Any] | None = None
    first_exact_version: str | None = None

    @property
    def overdue(self) -> bool:
        """Past its deadline with no exact version served (a provisional one may serve)."""
        return self.deadline_status == "missed" and self.served_at is None

    @property
    def gates_passed(self) -> bool | None:
        """Whether every gate of the first honouring version passed (None: no such version)."""
        if self.first_honouring_version is None:
            return None
        return all(gate.passed for gate in self.gates)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, one section per stage of the request's life."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "request_id": self.request_id,
            "state": self.state,
            "received": {
                "at": iso(self.received_at),
                "requested_at": iso(self.requested_at),
                "reason": self.reason,
                "record_count": self.record_count,
                "records_digest": self.records_digest,
                # Only a client removal has the key: record audits read as they did.
                **({"client_hashes": list(self.client_hashes)} if self.client_hashes else {}),
            },
            "verified": {"validated": self.validated, "signature": self.signature},
            "applied": {
                "at": iso(self.applied_at),
                "data_revision": self.data_revision,
                "parent_revision": self.parent_revision,
                "data_md5": self.data_md5,
                "versions_made_for": list(self.versions_made_for),
                "shards_retrained": {str(k): v for k, v in sorted(self.shards_retrained.items())},
                "noop": self.noop,
            },
            "honoured": {
                "first_version": self.first_honouring_version,
                "registered_at": iso(self.first_honouring_created_at),
                "gates": [gate.to_dict() for gate in self.gates],
                "gates_passed": self.gates_passed,
                "served_version": self.served_version,
                "champion_since": iso(self.served_at),
                "first_exact_version": self.first_exact_version,
            },
            "exactness": {
                "run": self.exactness is not None,
                "passed": self.exactness,
                "version": self.first_exact_version if self.exactness is not None else None,
            },
            "champion": {"version": self.champion_version, "honours": self.champion_honours},
            "purge": {
                "purged": self.purged_at is not None,
                "at": iso(self.purged_at),
                "retention_until": iso(self.retention_until),
                "details": dict(self.purge),
            },
            "deadline": {
                "due": iso(self.deadline),
                "latency_days": self.latency_days,
                "status": self.deadline_status,
                "paused_days": self.paused_days,
                "paused_reason": self.paused_reason,
            },
            "holds": [dict(h) for h in self.holds],
            "approvals": [dict(a) for a in self.approvals],
            "failures": [dict(failure) for failure in self.failures],
            "versions_purged": {v: iso(at) for v, at in sorted(self.versions_purged.items())},
            "ledger": {"intact": not self.ledger_problems, "problems": list(self.ledger_problems)},
            "privacy": dict(self.privacy) or None,
            # Only for a request a provisional version serves (issue 14): older views unchanged.
            **(
                {"approximate": {**self.approximate, "overdue": self.overdue}}
                if self.approximate
                else {}
            ),
        }


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time as an aware datetime (UTC when it has no zone); None if unparsable."""
    return parse_datetime_or_none(value)


def received_entries(entries: Iterable[LedgerEntry]) -> dict[str, LedgerEntry]:
    """The first `received` entry of each request id (a replay writes none)."""
    found: dict[str, LedgerEntry] = {}
    for entry in entries:
        if entry.event == "received":
            found.setdefault(entry.request_id, entry)
    return found


def first_honouring(versions: Iterable[VersionInfo], request_id: str) -> VersionInfo | None:
    """The first version whose gates passed and that honours `request_id`.

    The same answer as `MlflowRegistry.first_honouring`, over versions already listed.
    """
    matches = [v for v in versions if v.gates_passed and request_id in v.honoured_requests]
    return min(matches, key=lambda v: int(v.version)) if matches else None


def champion_of(versions: Iterable[VersionInfo]) -> VersionInfo | None:
    """The version the `champion` alias points at, if any."""
    return next((v for v in versions if CHAMPION_ALIAS in v.aliases), None)


def _records_digest(record_hashes: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(record_hashes)).encode()).hexdigest()


def _signature(data: Mapping[str, Any]) -> str | None:
    # Signed requests are being added (DESIGN.md "Requests"): report whatever the
    # `received` entry records about the signature, and nothing when it records none.
    for key in ("signature", "signed_by", "sender"):
        if data.get(key):
            return str(data[key])
    return None


def covering_requests(state: RequestState, states: Mapping[str, RequestState]) -> tuple[str, ...]:
    """Other served requests that forgot every record of `state` (empty unless all are).

    A request whose records were all forgotten before it arrived is served without a
    version of its own (a no-op): the versions honouring those requests honour it, though
    their `unlearn.honoured_requests` tags, written earlier, do not name it.
    """
    wanted = set(state.record_hashes)
    found: dict[str, str] = {}
    for other in states.values():
        if other.request_id == state.request_id or other.served is None or other.served.get("noop"):
            continue
        for record_hash in wanted.intersection(other.record_hashes):
            found.setdefault(record_hash, other.request_id)
    if not wanted or set(found) != wanted:
        return ()
    return tuple(sorted(set(found.values())))


def _honours(version: VersionInfo, request_id: str, covering: Sequence[str]) -> bool:
    honoured = version.honoured_requests
    return request_id in honoured or (bool(covering) and set(covering) <= set(honoured))


def _honouring(
    versions: Sequence[VersionInfo],
    request_id: str,
    covering: Sequence[str],
    *,
    exactly: bool = False,
) -> VersionInfo | None:
    def first(request: str) -> VersionInfo | None:
        # A provisional version (issue 14) honours the requests it was made for, and those
        # its ancestors were, only approximately.
        candidates = (
            [v for v in versions if request not in approximate_requests(v)] if exactly else versions
        )
        return first_honouring(candidates, request)

    direct = first(request_id)
    if direct is not None or not covering:
        return direct
    found = [first(other) for other in covering]
    if any(version is None for version in found):
        return None
    return max((v for v in found if v is not None), key=lambda v: int(v.version))


def _first_honoured(
    state: RequestState,
    versions: Sequence[VersionInfo],
    covering: Sequence[str],
    *,
    exactly: bool = False,
) -> str | None:
    """The first version that honoured the request, registered now or purged since.

    The registry answers for the versions it still holds; the ledger's `served` entry
    names the version that was served, which a purge may have deleted since. `exactly`:
    the first that honoured it exactly (a provisional version does not, nor does the
    ledger's `served` entry while it is approximate).
    """
    honouring = _honouring(versions, state.request_id, covering, exactly=exactly)
    first = honouring.version if honouring is not None else None
    served = None if exactly and state.approximate else (state.served or {}).get("version")
    if served is None or str(served) in {v.version for v in versions}:
        return first
    if first is None or version_number(str(served)) < version_number(first):
        return str(served)
    return first


def _made_for(
    state: RequestState, versions: Sequence[VersionInfo], recorded: Mapping[str, RecordedVersion]
) -> list[str]:
    """Versions registered for the request: the registry's, and those the ledger names."""
    request_id = state.request_id
    found = {v.version for v in versions if request_id in v.request_ids}
    served = state.served or {}
    if "version" in served and not served.get("noop"):
        found.add(str(served["version"]))
    found.update(str(f["version"]) for f in state.failures if f.get("version") is not None)
    found.update(number for number, r in recorded.items() if request_id in r.request_ids)
    return sorted(found, key=version_number)


def _merge_stages(*sources: Mapping[int, int]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for source in sources:
        for shard, first in source.items():
            merged[shard] = min(first, merged.get(shard, first))
    return merged


def build_audit(
    state: RequestState,
    received: LedgerEntry | None,
    versions: Sequence[VersionInfo],
    compliance: ComplianceParams,
    *,
    now: datetime,
    parent_revision: str | None = None,
    exactness: bool | None = None,
    ledger_problems: Sequence[str] = (),
    covering: Sequence[str] = (),
    recorded: Mapping[str, RecordedVersion] | None = None,
) -> RequestAudit:
    """Assemble the audit of one request from what the ledger and the registry hold.

    Args:
        state: the request's folded ledger state (:meth:`Ledger.requests`).
        received: its `received` entry (reason, requested-at), if the ledger has it.
        versions: every registered version.
        compliance: the deadline and retention windows.
        now: the time to judge a pending deadline against.
        parent_revision: the commit before its data revision (read from git by the caller).
        exactness: the certificate verdict of the first honouring version, if one was run.
        ledger_problems: the ledger's chain problems (:meth:`Ledger.verify_chain`).
        covering: other served requests that forgot all its records before it came
            (:func:`covering_requests`): a version honours it when it honours them.
        recorded: versions as the ledger recorded them (:func:`recorded_versions`): what
            is known of the versions the registry no longer holds.
    """
    from unlearn_ops.privacy.membership import privacy_summary

    recorded = recorded or {}
    live = {v.version: v for v in versions}
    data = received.data if received is not None else {}
    received_at = parse_time(state.received_at) or now
    requested_at = parse_time(data.get("requested_at")) or received_at
    applied = state.applied or {}
    served = state.served or {}
    first = _first_honoured(state, versions, covering)
    made_for = _made_for(state, versions, recorded)
    stages = [
        shards_retrained([live[v]]) if v in live else dict(recorded[v].first_stages)
        for v in made_for
        if v in live or v in recorded
    ]
    if state.applied is not None:
        # Every shard its removal left stale retrained before `applied` was written, in
        # this run or in one killed before (finding 7): the plan recorded on arrival.
        stages.append(state.planned_shards)
    champion = champion_of(versions)
    served_version = str(served["version"]) if "version" in served else None
    gates: tuple[GateSummary, ...] = ()
    first_created: datetime | None = None
    if first is not None and first in live:
        first_created = datetime.fromtimestamp(live[first].created_at / 1000, UTC)
        gates = gate_summaries(live[first])
    elif first is not None:
        kept = recorded.get(first, RecordedVersion(first))
        first_created, gates = kept.registered_at, kept.gates
    named = {*made_for, *(v for v in (first, served_version) if v is not None)}
    purged_versions = {
        v: at
        for v in named
        if v not in live and (at := recorded.get(v, RecordedVersion(v)).purged_at) is not None
    }
    served_at = parse_time(served.get("at"))
    approximate = None
    if state.approximate:
        # A provisional version honours it approximately: the deadline waits for the exact one.
        approximate = {
            "version": served_version,
            "method": served.get("method"),
            "served_at": served.get("at"),
        }
        served_at = None
    purged_at = parse_time((state.purged or {}).get("at"))
    paused, paused_reason = paused_clock(state.holds, served_at or now)
    deadline = requested_at + timedelta(days=compliance.deadline_days) + paused
    latency = None
    if served_at is not None:
        latency = round((served_at - requested_at).total_seconds() / 86_400, 4)
        status: DeadlineStatus = "met" if served_at <= deadline else "missed"
    elif paused_reason is not None:
        status = "paused"
    else:
        status = "missed" if now > deadline else "pending"
    retention = served_at + timedelta(days=compliance.retention_days) if served_at else None
    return RequestAudit(
        request_id=state.request_id,
        state=state.display_state,
        received_at=received_at,
        requested_at=requested_at,
        reason=str(data.get("reason", "")),
        record_count=len(state.record_hashes),
        records_digest=_records_digest(state.record_hashes),
        validated=received is not None,
        signature=_signature(data),
        applied_at=parse_time(applied.get("at")),
        data_revision=applied.get("git_sha"),
        parent_revision=parent_revision,
        data_md5=applied.get("shards_md5"),
        versions_made_for=tuple(made_for),
        shards_retrained=_merge_stages(*stages),
        noop=bool(served.get("noop", False)),
        first_honouring_version=first,
        first_honouring_created_at=first_created,
        gates=gates,
        served_version=served_version,
        served_at=served_at,
        exactness=exactness,
        champion_version=champion.version if champion else None,
        champion_honours=champion is not None and _honours(champion, state.request_id, covering),
        purged_at=purged_at,
        # The facts of deleted versions surface as versions; the details keep the counts.
        purge={
            k: v for k, v in (state.purged or {}).items() if k not in ("at", "deleted_versions")
        },
        retention_until=retention,
        deadline=deadline,
        latency_days=latency,
        deadline_status=status,
        failures=tuple(
            {k: v for k, v in failure.items() if k != "version_facts"} for failure in state.failures
        ),
        ledger_problems=tuple(ledger_problems),
        versions_purged=purged_versions,
        client_hashes=tuple(str(h) for h in data.get("client_hashes", ())),
        privacy=next(
            (
                {"version": v, **privacy_summary(live[v].tags)}
                for v in (first, *reversed(made_for))
                if v in live and live[v].tag("privacy.verdict")
            ),
            {},
        ),
        holds=tuple(state.holds),
        paused_days=round(paused.total_seconds() / 86_400, 6),
        paused_reason=paused_reason,
        approvals=tuple(state.approvals),
        approximate=approximate,
        first_exact_version=_first_honoured(state, versions, covering, exactly=True),
    )


@dataclass(frozen=True)
class ChainStatus:
    """The ledger's hash chain: how many entries it holds and what is wrong with it."""

    entries: int
    problems: tuple[str, ...]

    @property
    def intact(self) -> bool:
        """No problem found."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"intact": self.intact, "entries": self.entries, "problems": list(self.problems)}


def check_chain(ledger: Ledger) -> ChainStatus:
    """Verify the ledger's hash chain (:meth:`Ledger.verify_chain`) and count its lines.

    Lines are counted as written, so a line that is not even an entry still counts (and
    is named among the problems).
    """
    try:
        text = ledger.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    count = sum(1 for line in text.splitlines() if line.strip())
    return ChainStatus(count, tuple(ledger.verify_chain()))


# ------------------------------------------------------------------ from a workspace
def _parent_revision(workspace: Workspace, sha: str | None) -> str | None:
    if not sha:
        return None
    from unlearn_ops.adapters.dvc.lineage import parent_commit

    return parent_commit(workspace.root, sha)


def audit_request(
    workspace: Workspace,
    request_id: str,
    *,
    certify: bool = False,
    now: datetime | None = None,
) -> RequestAudit:
    """The audit of one request of a workspace.

    Args:
        workspace: the workspace.
        request_id: the request.
        certify: run the exactness certificate of the first version that honours it
            exactly (:func:`unlearn_ops.workflow.certification.certify_version`; retrains its
            shards from scratch); a client removal's runs on the Flower deployment
            (`unlearn-ops federation certify`), not here.
        now: the time to judge a pending deadline against (default: now).

    Raises:
        RequestNotFoundError: the ledger never received `request_id`.
    """
    from unlearn_ops.workflow.certification import certify_version

    entries = list(workspace.ledger.entries())
    states = workspace.ledger.requests()
    state = states.get(request_id)
    if state is None:
        raise RequestNotFoundError(request_id, workspace.ledger.path, sorted(states))
    versions = workspace.registry().versions()
    covering = covering_requests(state, states)
    audit = build_audit(
        state,
        received_entries(entries).get(request_id),
        versions,
        workspace.params.compliance,
        now=now or datetime.now(UTC),
        parent_revision=_parent_revision(workspace, (state.applied or {}).get("git_sha")),
        ledger_problems=workspace.ledger.verify_chain(),
        covering=covering,
        recorded=recorded_versions(entries),
    )
    first = audit.first_exact_version
    # A client removal is certified on the Flower deployment (`federation certify`); a
    # purged version's data and weights are gone: there is nothing left to certify.
    if (
        certify
        and not audit.client_hashes
        and first is not None
        and first in {v.version for v in versions}
    ):
        audit = replace(audit, exactness=certify_version(workspace, first).passed)
    return audit


def audit_requests(
    workspace: Workspace,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    versions: Sequence[VersionInfo] | None = None,
) -> list[RequestAudit]:
    """The audits of every request received in [since, until), oldest first (no certificate).

    Args:
        workspace: the workspace.
        since: first instant included (default: the beginning).
        until: first instant excluded (default: no end).
        now: the time to judge pending deadlines against (default: now).
        versions: the registry's versions, when the caller listed them already.
    """

    entries = list(workspace.ledger.entries())
    received = received_entries(entries)
    if versions is None:
        versions = workspace.registry().versions()
    problems = workspace.ledger.verify_chain()
    recorded = recorded_versions(entries)
    moment = now or datetime.now(UTC)
    audits = []
    states = workspace.ledger.requests()
    for request_id, state in states.items():
        received_at = parse_time(state.received_at) or moment
        if (since is not None and received_at < since) or (
            until is not None and received_at >= until
        ):
            continue
        audit = build_audit(
            state,
            received.get(request_id),
            versions,
            workspace.params.compliance,
            now=moment,
            parent_revision=_parent_revision(workspace, (state.applied or {}).get("git_sha")),
            ledger_problems=problems,
            covering=covering_requests(state, states),
            recorded=recorded,
        )
        audits.append(audit)
    return sorted(audits, key=lambda a: (a.received_at, a.request_id))

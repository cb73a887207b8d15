"""Retention: delete, after a window, every stored artifact that still holds forgotten records.

A forget leaves the records it removed in older artifacts: the model versions registered
before it (MLflow runs, logged models and their weights), the DVC objects of the old shard
files and weights (cache and remote: content addressing keeps them), and the stage
checkpoints trained on them. They are kept `compliance.retention_days` after the request
was applied (ledger `applied`) for audit and rollback by replay; then `purge` deletes:

- every model version that does not honour a due request (never the champion; a version
  that honours every deletion is never touched);
- the DVC objects used by no revision that is kept (the workspace, and the git commit of
  every version still registered): DVC's own gc, scoped to those revisions;
- every stage checkpoint whose index entry (:mod:`unlearn_ops.sisa.checkpoint_index`) names a
  record of a due request, and checkpoints with no index entry that lie on no kept chain;
- in a federation, the run folders that hold a client whose removal is due (its round
  checkpoints, stored updates, FedEraser and certificate runs), unless a kept model
  names them (:mod:`unlearn_ops.workflow.federated_retention`).

A request becomes `purged` in the ledger when it is due and no version that lacks it is
left. A request that the champion itself does not honour (its version failed its gates)
is *blocked*: nothing is deleted for it until a version that honours it is champion.

The planning here is pure (:func:`plan_versions`, :func:`checkpoints_to_purge`); the
functions that act on a workspace import the adapters inside, as :mod:`unlearn_ops.workflow`
does.

Why this module is long: the retention plan (which versions, checkpoints and DVC objects are
due, and when the rest comes due) and its execution share one set of types (the plan is
what is executed, and what `--dry-run` prints); the DVC garbage collection itself lives
in :mod:`unlearn_ops.adapters.dvc.cache`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import PlainSerializer

from unlearn_ops.canonical import JsonReady
from unlearn_ops.errors import InvalidRequestError
from unlearn_ops.timestamps import parse_datetime

if TYPE_CHECKING:
    from unlearn_ops.deletion.ledger import RequestState
    from unlearn_ops.sisa.checkpoint_index import CheckpointIndex
    from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "ForgottenRequest",
    "PurgePlan",
    "RequestFate",
    "VersionFate",
    "VersionSummary",
    "checkpoints_to_purge",
    "execute_purge",
    "forgotten_requests",
    "parse_now",
    "plan_purge",
    "plan_versions",
    "purge_workspace",
]


def parse_now(text: str | None) -> datetime:
    """An ISO date-time as an aware datetime (UTC when no zone is given); now when None.

    Raises:
        InvalidRequestError: not an ISO 8601 date or date-time.
    """
    if text is None:
        return datetime.now(UTC)
    try:
        return parse_datetime(text)
    except ValueError as exc:
        raise InvalidRequestError(
            f"--now {text!r} is not an ISO 8601 date-time", "write it as 2027-01-31T12:00:00Z"
        ) from exc


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


# A time in a JSON view: UTC, whole seconds (as purge reports have always shown it).
_IsoSeconds = Annotated[datetime, PlainSerializer(_iso)]


@dataclass(frozen=True)
class ForgottenRequest:
    """A request whose records are all forgotten, and its retention clock.

    Attributes:
        request_id: the request.
        record_hashes: keyed hashes of its records.
        applied_at: when its records left the data (ledger `applied`; for a request found
            served already, ledger `served`).
        due_at: `applied_at` plus the retention window.
        purged_at: when a purge completed it (ledger `purged`), if one did.
    """

    request_id: str
    record_hashes: frozenset[str]
    applied_at: datetime
    due_at: datetime
    purged_at: str | None = None


def forgotten_requests(
    states: Mapping[str, RequestState],
    forgotten: set[str],
    retention_days: int,
    removed_clients: frozenset[str] | set[str] = frozenset(),
) -> list[ForgottenRequest]:
    """The requests whose records are all forgotten in the current data, oldest first, and
    those whose federation client was removed (`removed_clients`, request ids).

    Requests still pending (received, not applied) are left out: nothing supersedes
    anything for them yet.
    """
    window = timedelta(days=retention_days)
    found = []
    for state in states.values():
        hashes = frozenset(state.record_hashes)
        client = state.request_id in removed_clients
        if not client and (not hashes or not hashes <= forgotten):
            continue
        clock = state.applied or state.served
        if clock is None:
            continue
        applied_at = parse_now(str(clock["at"]))
        purged_at = str(state.purged["at"]) if state.purged else None
        found.append(
            ForgottenRequest(state.request_id, hashes, applied_at, applied_at + window, purged_at)
        )
    return sorted(found, key=lambda r: (r.applied_at, r.request_id))


@dataclass(frozen=True)
class VersionSummary:
    """What planning needs of a registered version."""

    version: str
    honoured: frozenset[str]
    git_sha: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class VersionFate(JsonReady):
    """What a purge does to one version.

    Attributes:
        version: the version.
        action: `delete` now, `pending` (holds forgotten records; deleted at `due_at`),
            or `keep`.
        reason: why, in words.
        due_at: when it goes (delete and pending).
        missing: the forgotten requests it does not honour.
    """

    version: str
    action: Literal["delete", "pending", "keep"]
    reason: str
    due_at: _IsoSeconds | None = None
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequestFate(JsonReady):
    """Where a forgotten request stands with retention.

    Attributes:
        request_id: the request.
        status: `purge` (completed by this purge), `purged` (before), `pending` (window
            still open) or `blocked` (the champion does not honour it).
        due_at: end of its retention window.
        versions: versions that do not honour it (deleted by this purge when `purge`).
    """

    request_id: str
    status: Literal["purge", "purged", "pending", "blocked"]
    due_at: _IsoSeconds
    versions: tuple[str, ...] = ()


def plan_versions(
    versions: Sequence[VersionSummary],
    requests: Sequence[ForgottenRequest],
    champion: str | None,
    now: datetime,
) -> tuple[list[VersionFate], list[RequestFate]]:
    """Which versions go now, which later, which stay; and where each request stands.

    A version that does not honour a request holds (or may hold) its records. It goes
    once the window of the earliest such request has passed, unless it is the champion,
    and unless every request it misses is blocked (the champion misses it too).
    """
    lacking = {
        r.request_id: tuple(v.version for v in versions if r.request_id not in v.honoured)
        for r in requests
    }
    blocked = {
        r.request_id for r in requests if champion is not None and champion in lacking[r.request_id]
    }
    fates = []
    for version in versions:
        missing = [r for r in requests if r.request_id not in version.honoured]
        names = tuple(r.request_id for r in missing)
        if not missing:
            fates.append(VersionFate(version.version, "keep", "honours every deletion"))
            continue
        if version.version == champion:
            fates.append(VersionFate(version.version, "keep", "champion", None, names))
            continue
        actionable = [r for r in missing if r.request_id not in blocked]
        if not actionable:
            fates.append(
                VersionFate(
                    version.version, "keep", "the champion holds the same records", None, names
                )
            )
            continue
        due = min(r.due_at for r in actionable)
        earliest = min(actionable, key=lambda r: r.due_at)
        # A federation client's removal names no record: the version holds the client.
        held = "records" if earliest.record_hashes else "the client"
        first = earliest.request_id
        if due <= now:
            reason = f"holds {held} of request {first}, retention ended {_iso(due)}"
            fates.append(VersionFate(version.version, "delete", reason, due, names))
        else:
            reason = f"holds {held} of request {first}; retention ends {_iso(due)}"
            fates.append(VersionFate(version.version, "pending", reason, due, names))
    request_fates = []
    for request in requests:
        status: Literal["purge", "purged", "pending", "blocked"]
        if request.purged_at is not None:
            status = "purged"
        elif request.request_id in blocked:
            status = "blocked"
        elif request.due_at <= now:
            status = "purge"
        else:
            status = "pending"
        request_fates.append(
            RequestFate(request.request_id, status, request.due_at, lacking[request.request_id])
        )
    return fates, request_fates


def checkpoints_to_purge(
    keys: Iterable[str],
    index: CheckpointIndex,
    purge_hashes: set[str],
    kept_chains: set[str],
) -> list[str]:
    """Checkpoints trained on a record being purged, by the index.

    A checkpoint with no index entry (trained before the index existed) cannot be shown
    clean: it goes unless it lies on the stage-key chain of a model that is kept.
    """
    chosen = []
    for key in keys:
        records = index.records(key)
        if (records is None and key not in kept_chains) or (
            records is not None and records & purge_hashes
        ):
            chosen.append(key)
    return chosen


@dataclass
class PurgePlan:
    """What a purge at `now` deletes, and what it leaves for later.

    Attributes:
        now: the moment the plan is for.
        retention_days: the window.
        versions: the fate of every registered version.
        requests: where every forgotten request stands.
        checkpoints: stage checkpoint keys to delete.
        cache_objects: DVC cache objects (md5) to delete.
        remote_objects: DVC remote objects (md5) to delete.
        remote: the default DVC remote, if any.
        keep_revs: git commits whose data stays readable (kept versions).
        federation_folders: federation run folders to delete (relative to the workspace).
        executed: filled in by :func:`execute_purge`.
    """

    now: datetime
    retention_days: int
    versions: list[VersionFate]
    requests: list[RequestFate]
    checkpoints: tuple[str, ...] = ()
    cache_objects: tuple[str, ...] = ()
    remote_objects: tuple[str, ...] = ()
    remote: str | None = None
    keep_revs: tuple[str, ...] = ()
    federation_folders: tuple[str, ...] = ()
    executed: dict[str, Any] = field(default_factory=dict)

    @property
    def versions_to_delete(self) -> list[str]:
        """Versions deleted now."""
        return [f.version for f in self.versions if f.action == "delete"]

    @property
    def requests_to_close(self) -> list[str]:
        """Requests this purge completes (ledger `purged`)."""
        return [f.request_id for f in self.requests if f.status == "purge"]

    @property
    def next_due(self) -> datetime | None:
        """When the next pending version or request comes due."""
        dates = [f.due_at for f in self.versions if f.action == "pending" and f.due_at]
        dates += [f.due_at for f in self.requests if f.status == "pending"]
        return min(dates) if dates else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "now": _iso(self.now),
            "retention_days": self.retention_days,
            "versions": [f.to_dict() for f in self.versions],
            "requests": [f.to_dict() for f in self.requests],
            "delete": {
                "versions": self.versions_to_delete,
                "checkpoints": len(self.checkpoints),
                "cache_objects": len(self.cache_objects),
                "remote_objects": len(self.remote_objects),
                "federation_folders": list(self.federation_folders),
            },
            "next_due": _iso(self.next_due),
            "remote": self.remote,
            **({"executed": self.executed} if self.executed else {}),
        }


# ------------------------------------------------------------------ on a workspace
def _kept_chains(workspace: Workspace, keep_revs: Iterable[str]) -> set[str]:
    """Stage keys of the served models and of the models at every kept revision."""
    import json

    from unlearn_ops.adapters.dvc.lineage import read_git_file
    from unlearn_ops.errors import LineageError

    ensemble = workspace.ensemble
    keys: set[str] = set()
    for shard_id in ensemble.shard_ids:
        keys.update((ensemble.served_model_info(shard_id) or {}).get("stage_keys", []))
    for rev in keep_revs:
        for shard_id in ensemble.shard_ids:
            try:
                text = read_git_file(workspace.root, rev, f"models/shard-{shard_id:03d}.json")
            except LineageError:
                continue
            keys.update(json.loads(text).get("stage_keys", []))
    return keys


def plan_purge(workspace: Workspace, now: datetime | None = None) -> PurgePlan:
    """What a purge at `now` (default: now) would delete; changes nothing."""
    from unlearn_ops.adapters.dvc.cache import collect_cache, default_remote
    from unlearn_ops.serving.versions import CHAMPION
    from unlearn_ops.sisa.checkpoint_index import CheckpointIndex
    from unlearn_ops.workflow.approx_tags import exactly_honoured
    from unlearn_ops.workflow.federated import served_groups
    from unlearn_ops.workflow.federated_retention import folders_holding_removed_clients

    moment = now or datetime.now(UTC)
    retention = workspace.params.compliance.retention_days
    requests = forgotten_requests(
        workspace.ledger.requests(),
        workspace.ensemble.forgotten_hashes(),
        retention,
        workspace.client_removal_requests(),
    )
    registry = workspace.registry()
    summaries = [
        # A superseded provisional version holds its approximate requests' traces (issue 14).
        VersionSummary(v.version, frozenset(exactly_honoured(v)), v.tag("git_sha"), v.aliases)
        for v in registry.versions()
    ]
    fates, request_fates = plan_versions(
        summaries, requests, registry.alias_version(CHAMPION), moment
    )
    plan = PurgePlan(moment, retention, fates, request_fates)
    closing = set(plan.requests_to_close)
    if not closing:
        plan.remote = default_remote(workspace.root)
        return plan
    deleted = set(plan.versions_to_delete)
    plan.keep_revs = tuple(
        sorted({s.git_sha for s in summaries if s.version not in deleted and s.git_sha})
    )
    plan.federation_folders = tuple(
        folders_holding_removed_clients(
            workspace,
            closing,
            [
                {g: str(f["run"]) for g, f in served_groups(workspace).items()},
                *(
                    json.loads(v.tag("federation.runs") or "{}")
                    for v in registry.versions()
                    if v.version not in deleted
                ),
            ],
        )
    )
    purge_hashes = {h for r in requests if r.request_id in closing for h in r.record_hashes}
    store = workspace.ensemble.checkpoint_store
    plan.checkpoints = tuple(
        checkpoints_to_purge(
            store.keys(),
            CheckpointIndex(workspace.root / "checkpoints" / "index"),
            purge_hashes,
            _kept_chains(workspace, plan.keep_revs),
        )
    )
    collected = collect_cache(workspace.root, plan.keep_revs, dry=True)
    plan.cache_objects, plan.remote_objects = collected.cache_objects, collected.remote_objects
    plan.remote = collected.remote
    return plan


def execute_purge(workspace: Workspace, plan: PurgePlan) -> PurgePlan:
    """Delete what `plan` lists, record `purged` per completed request, commit.

    Versions go first (registry, runs, artifacts), then checkpoints, then the DVC objects
    (recomputed with the same kept revisions, so nothing a kept version needs is lost).
    The ledger entries and the git commit come last: a crash before them leaves the
    requests unpurged, and running the purge again finishes the job.
    """
    from unlearn_ops.adapters.dvc.cache import collect_cache
    from unlearn_ops.serving.records import version_facts
    from unlearn_ops.workflow.revisions import record_workspace_revision

    closing = plan.requests_to_close
    if not closing:
        plan.executed = {
            "versions": [],
            "checkpoints": 0,
            "cache_objects": 0,
            "federation_folders": [],
        }
        return plan
    registry = workspace.registry()
    # What the audit and the report still need of the versions about to go (issue 11, 3).
    facts = {v.version: version_facts(v) for v in registry.versions()}
    deleted = [registry.delete_version(version) for version in plan.versions_to_delete]
    store = workspace.ensemble.checkpoint_store
    for key in plan.checkpoints:
        store.delete(key)
    for folder in plan.federation_folders:
        if (workspace.root / folder).exists():
            shutil.rmtree(workspace.root / folder)
    collected = collect_cache(workspace.root, plan.keep_revs)
    by_version = {d.version: d for d in deleted}
    for fate in plan.requests:
        if fate.status != "purge":
            continue
        workspace.ledger.append(
            "purged",
            fate.request_id,
            versions=[v for v in fate.versions if v in by_version],
            runs=[by_version[v].run_id for v in fate.versions if v in by_version],
            deleted_versions={v: facts[v] for v in fate.versions if v in by_version},
            checkpoints=len(plan.checkpoints),
            federation_folders=list(plan.federation_folders),
            cache_objects=len(collected.cache_objects),
            remote_objects=len(collected.remote_objects),
            retention_days=plan.retention_days,
            due_at=_iso(fate.due_at),
        )
    record_workspace_revision(
        workspace, f"unlearn-ops: purge superseded artifacts of {', '.join(closing)}"
    )
    plan.executed = {
        "versions": [d.version for d in deleted],
        "hard_deleted": all(d.hard for d in deleted),
        "checkpoints": len(plan.checkpoints),
        "cache_objects": len(collected.cache_objects),
        "remote_objects": len(collected.remote_objects),
        "federation_folders": list(plan.federation_folders),
        "purged_requests": closing,
    }
    return plan


def purge_workspace(
    workspace: Workspace, now: datetime | None = None, *, dry_run: bool = False
) -> PurgePlan:
    """Plan a purge and, unless `dry_run`, carry it out (under the workspace's lock)."""
    with workspace.lock():
        plan = plan_purge(workspace, now)
        return plan if dry_run else execute_purge(workspace, plan)

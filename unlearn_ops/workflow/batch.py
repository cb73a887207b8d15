"""A batch of deletion requests before retraining: hold back, receive, check, close a no-op, apply.

`hold_back` takes out what a legal hold forbids to erase now (every path that executes
requests calls it first: the drain and the `forget-records` flow);
Both `receive_requests` and `check_batch` refuse a bad batch before anything is written;
a batch whose every request a registered version honours already is closed without
retraining (`close_noop`); otherwise `apply_batch` removes its records from the shard
files, and the shards it made stale retrain (:mod:`unlearn_ops.workflow.retraining`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from unlearn_ops.deletion.ledger import RequestState
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.errors import InvalidRequestError
from unlearn_ops.sisa.planning import RetrainingPlan
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.deletion.holds import Hold

__all__ = [
    "BatchOutcome",
    "apply_batch",
    "check_batch",
    "close_noop",
    "describe_noop",
    "hold_back",
    "mark_held",
    "receive_requests",
]


@dataclass
class BatchOutcome:
    """How a batch of requests stands before any work: pending, or already served.

    Attributes:
        requests: the requests of the batch.
        plan: what removing their not-yet-forgotten records will retrain.
        served_by: for requests honoured already, the first version that honours them.
    """

    requests: list[ForgetRequest]
    plan: RetrainingPlan
    served_by: dict[str, str] = field(default_factory=dict)

    @property
    def is_noop(self) -> bool:
        """Every request is honoured by a registered version already."""
        return all(r.request_id in self.served_by for r in self.requests)


def receive_requests(workspace: Workspace, requests: Sequence[ForgetRequest]) -> None:
    """Record each new request as `received` in the ledger (ids as keyed hashes only).

    A request id seen before with the same records is the same request (no new entry);
    with other records it is refused, and nothing is written for the batch.

    Raises:
        InvalidRequestError: an empty batch, a request id twice in it, or a replay with
            changed records.
    """
    if not requests:
        raise InvalidRequestError("no requests given")
    ids = [r.request_id for r in requests]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise InvalidRequestError(f"request id(s) {', '.join(duplicated)} appear twice")
    known = workspace.ledger.requests()
    new = []
    for request in requests:
        hashes = request.record_hashes(workspace.settings)
        state = known.get(request.request_id)
        # Entries before `received` (an approval, a failure at the intake) are not a
        # receipt: the request is new to the ledger until its `received` entry.
        if state is None or not state.received_at:
            new.append((request, hashes))
        elif sorted(state.record_hashes) != hashes:
            raise InvalidRequestError(
                f"request {request.request_id} was received before with other records",
                "a request id is an idempotency key: use a new id for new records",
            )
    # What removing the batch's records will retrain, recorded before anything is removed:
    # a run killed half-way leaves its shards retrained and no longer stale (issue 11, 7).
    record_ids = list(dict.fromkeys(r for request, _ in new for r in request.record_ids))
    plan = workspace.ensemble.plan_forget(record_ids) if record_ids else None
    retrains = {str(s.shard_id): s.first_stage for s in plan.shards} if plan else {}
    for request, hashes in new:
        workspace.ledger.append(
            "received",
            request.request_id,
            record_hashes=hashes,
            reason=request.reason,
            requested_at=request.requested_at.isoformat(),
            retrains=retrains,
            **({"signed_by": request.signed_by} if request.signed_by else {}),
        )


def check_batch(workspace: Workspace, requests: Sequence[ForgetRequest]) -> BatchOutcome:
    """Validate a batch against the data, the ledger and the registry; changes nothing.

    A request is served already when a version honours its id, or when every one of its
    records was forgotten by requests that a version serves (then the newest of those
    versions is the first that honours it).

    Raises:
        UnknownRecordsError: ids that were never in the data (the whole batch is refused).
    """
    record_ids = list(dict.fromkeys(r for request in requests for r in request.record_ids))
    plan = workspace.ensemble.plan_forget(record_ids)
    registry = workspace.registry()
    forgotten = workspace.ensemble.forgotten_hashes()
    served_by = {}
    for request in requests:
        version = registry.first_honouring(request.request_id)
        if version is not None:
            served_by[request.request_id] = version.version
            continue
        hashes = set(request.record_hashes(workspace.settings))
        if not hashes <= forgotten:
            continue
        serving = workspace.ledger.serving_requests(sorted(hashes))
        if set(serving) == hashes:
            # The first version honouring all of them, as registered now: the one the
            # ledger names may have been purged since.
            honouring = [registry.first_honouring(s.request_id) for s in serving.values()]
            if all(honouring):
                served_by[request.request_id] = str(
                    max(int(v.version) for v in honouring if v is not None)
                )
    return BatchOutcome(list(requests), plan, served_by)


def close_noop(workspace: Workspace, outcome: BatchOutcome) -> dict[str, Any]:
    """Requests found served already: `served` in the ledger, and named by their versions.

    A request whose records were all forgotten by earlier requests is honoured by every
    version that honours those; their `unlearn.honoured_requests` tags gain its id, so
    that a search by request id (and the MLflow UI) finds it like any other.
    """
    from unlearn_ops.serving.records import version_facts

    states = workspace.ledger.requests()
    registry = workspace.registry()
    versions = registry.versions()
    for request in outcome.requests:
        request_id = request.request_id
        version = outcome.served_by.get(request_id)
        if version is None:
            continue
        state = states.get(request_id)
        if state is None or state.served is None:
            facts = next((version_facts(v) for v in versions if v.version == version), None)
            extra = {"version_facts": facts} if facts else {}
            workspace.ledger.append("served", request_id, version=version, noop=True, **extra)
        hashes = request.record_hashes(workspace.settings)
        covering = {s.request_id for s in workspace.ledger.serving_requests(hashes).values()}
        if not covering:
            continue  # found by its own id: the versions name it already
        for info in versions:
            honoured = info.honoured_requests
            if request_id not in honoured and covering <= set(honoured):
                registry.set_version_tag(
                    info.version, "honoured_requests", json.dumps([*honoured, request_id])
                )
                registry.set_version_tag(info.version, "honoured_count", str(len(honoured) + 1))
    return describe_noop(outcome)


def describe_noop(outcome: BatchOutcome) -> dict[str, Any]:
    """The answer of a batch that is served already."""
    return {
        "noop": True,
        "served_by": dict(outcome.served_by),
        "message": "; ".join(
            f"request {r} is honoured already by version {v}" for r, v in outcome.served_by.items()
        ),
    }


def apply_batch(workspace: Workspace, requests: Sequence[ForgetRequest]) -> RetrainingPlan:
    """Remove the batch's records from the shard files (no retraining yet).

    A batch that names its records by keyed hash only (removed already, by a run that
    crashed before registering) removes nothing; its shards are stale and retrain.
    """
    record_ids = list(dict.fromkeys(r for request in requests for r in request.record_ids))
    if not record_ids:
        return workspace.ensemble.plan_forget([])
    plan, _removed = workspace.ensemble.remove_records(record_ids)
    return plan


@dataclass
class HeldBack:
    """A batch split by the legal holds standing now.

    Attributes:
        proceed: what may be executed: requests no hold touches and, under
            `compliance.holds: partial`, the un-held records of the others as a request
            `<id>.unheld` of their own.
        held: request id -> why it waits (the holds' ids and reasons).
    """

    proceed: list[ForgetRequest]
    held: dict[str, str] = field(default_factory=dict)

    def answer(self) -> dict[str, Any]:
        """The answer of a run whose every request waits: nothing executed."""
        return {
            "noop": True,
            "served_by": {},
            "held": dict(self.held),
            "message": "; ".join(
                f"request {r} is under legal hold ({why}): not executed until the hold "
                "is released (then a drain serves it, or run this forget again)"
                for r, why in self.held.items()
            ),
        }


def hold_back(
    workspace: Workspace, requests: Sequence[ForgetRequest], now: datetime | None = None
) -> HeldBack:
    """Take out of a batch the records that a legal hold forbids to erase now.

    A request naming held records is received (ledger) and marked `held` with the holds'
    reasons; under `compliance.holds: whole` (the default) it waits entirely, under
    `partial` its other records proceed as `<id>.unheld` while the request itself waits.
    Releasing the hold queues it again (:func:`unlearn_ops.deletion.holds.release_hold`).

    Raises:
        InvalidRequestError: as :func:`receive_requests`, for a held request.
    """
    from unlearn_ops.deletion.holds import find_held, fold_holds

    hashes = {r.request_id: r.record_hashes(workspace.settings) for r in requests}
    found = find_held(workspace, hashes, now)
    if not found:
        return HeldBack(list(requests))
    waiting = [r for r in requests if r.request_id in found]
    receive_requests(workspace, waiting)
    holds = fold_holds(workspace.ledger.entries())
    states = workspace.ledger.requests()
    partial = workspace.params.compliance.holds == "partial"
    result = HeldBack([r for r in requests if r.request_id not in found])
    for request in waiting:
        by_hold = found[request.request_id]
        held_hashes = {x for overlap in by_hold.values() for x in overlap}
        rest = _unheld(workspace, request, held_hashes, states) if partial else None
        if rest is not None:
            result.proceed.append(rest)
        result.held[request.request_id] = mark_held(
            workspace,
            request.request_id,
            by_hold,
            holds,
            states.get(request.request_id),
            records_held=len(held_hashes),
            records=len(hashes[request.request_id]),
            mode=workspace.params.compliance.holds,
            proceeding_as=rest.request_id if rest is not None else None,
        )
    return result


def mark_held(
    workspace: Workspace,
    request_id: str,
    hold_ids: Iterable[str],
    holds: Mapping[str, Hold],
    state: RequestState | None,
    **facts: Any,
) -> str:
    """Mark a request `held` by these holds in the ledger, with their reasons and `facts`.

    Nothing is written when the ledger says so already (a rerun while the holds stand).

    Args:
        workspace: the workspace.
        request_id: the request held back.
        hold_ids: the holds that stand on it.
        holds: every hold (:func:`~unlearn_ops.deletion.holds.fold_holds`), for the reasons.
        state: the request's state in the ledger (None: never received).
        facts: what else the `held` entry records (counts, mode).

    Returns:
        The holds and their reasons in one line (`hold-...: reason; ...`).
    """
    ids = sorted(hold_ids)
    reasons = [holds[h].reason for h in ids]
    recorded = state is not None and state.state == "held" and bool(state.holds)
    if not (recorded and state is not None and state.holds[-1].get("holds") == ids):
        workspace.ledger.append("held", request_id, holds=ids, reasons=reasons, **facts)
    return "; ".join(f"{h}: {why}" for h, why in zip(ids, reasons, strict=True))


def _unheld(
    workspace: Workspace,
    request: ForgetRequest,
    held: set[str],
    states: Mapping[str, RequestState],
) -> ForgetRequest | None:
    """The request's records that no hold holds, as a request of their own (None if none).

    Its id is `<id>.unheld`; when that id was received before with other records (a hold
    was released, or placed, since that part went ahead), it is `<id>.unheld.2`, `.3`, ...:
    each split-off part is a request of its own, and an id never changes its records.
    """
    hash_id = workspace.settings.hash_record_id
    record_ids = tuple(r for r in request.record_ids if hash_id(r) not in held)
    forgotten = tuple(h for h in request.forgotten_hashes if h not in held)
    if not record_ids and not forgotten:
        return None
    rest = request.model_copy(update={"record_ids": record_ids, "forgotten_hashes": forgotten})
    hashes = rest.record_hashes(workspace.settings)
    for n in itertools.count(1):
        request_id = f"{request.request_id}.unheld" + (f".{n}" if n > 1 else "")
        state = states.get(request_id)
        if state is None or not state.received_at or sorted(state.record_hashes) == hashes:
            return rest.model_copy(update={"request_id": request_id})
    raise AssertionError("unreachable")  # pragma: no cover

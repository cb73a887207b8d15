"""FedEraser's removals are provisional: when the drain uses it, and the exact removals owed.

A FedEraser removal (:func:`unlearn_ops.workflow.federated.plan_removal`, method
`federaser`) serves a client's withdrawal at once, approximately; the ledger marks it
served approximately with the exact removal due by the request's deadline. The
`remove-clients-exactly` flow serves what :func:`pending_exact_removals` lists, one
exact group retrain per erased group; the drain removes a withdrawn client by FedEraser
where :func:`inbox_removal_method` says so (`params.yaml`: `unlearning.withdrawals`).
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearn_ops.workflow.federated import (
    RemovalMethod,
    RemovalReason,
    client_group,
    read_state,
    why_not_erasable,
)
from unlearn_ops.workflow.workspace import Workspace

__all__ = ["PendingRemoval", "inbox_removal_method", "pending_exact_removals"]


@dataclass(frozen=True)
class PendingRemoval:
    """A client FedEraser removed whose request still waits for the exact removal.

    Attributes:
        request_id: the withdrawal (or expulsion) request.
        client_hash: the client's keyed hash.
        group: its group, the one the exact removal retrains.
        reason: `withdrawal` or `poisoning`, as recorded at the removal.
        requests: every pending request of the group (`request_id` first): the exact
            retrain of the group serves them all.
    """

    request_id: str
    client_hash: str
    group: int
    reason: RemovalReason
    requests: tuple[str, ...]


def pending_exact_removals(workspace: Workspace) -> list[PendingRemoval]:
    """The exact removals still owed after FedEraser ones: one per group, in group order.

    A request is owed while the ledger says it is served only approximately. One exact
    retrain of a group (without every client removed from it) serves all of that group's
    pending requests, so each group is named once, by its first pending request.
    """
    from unlearn_ops.workflow.approx_versions import pending_exact_requests

    pending = set(pending_exact_requests(workspace, clients=True))
    if not pending:
        return []
    state = read_state(workspace)
    group_of = {c["client_hash"]: int(c["group"]) for c in state["clients"]}
    first: dict[int, tuple[str, str, RemovalReason]] = {}
    requests: dict[int, list[str]] = {}
    for entry in state["removed"]:
        group = group_of[entry["client_hash"]]
        for request_id in entry.get("requests", []):
            if request_id in pending:
                first.setdefault(group, (request_id, entry["client_hash"], entry["reason"]))
                requests.setdefault(group, []).append(request_id)
    return [
        PendingRemoval(*first[group][:2], group, first[group][2], tuple(requests[group]))
        for group in sorted(first)
    ]


def inbox_removal_method(workspace: Workspace, client_hash: str) -> tuple[RemovalMethod, str]:
    """How the drain removes a withdrawn client: `unlearning.withdrawals` where it can.

    FedEraser needs the client's group served by a training run with stored updates (not
    by an earlier erasure); otherwise the client is removed exactly, and the note says why.
    """
    if workspace.params.unlearning.withdrawals == "exact":
        return "exact", ""
    state = read_state(workspace)
    group = client_group(state["clients"], client_hash)
    why_not = None if group is None else why_not_erasable(workspace, group)
    if why_not is not None:
        return "exact", f"removed exactly: {why_not}"
    return "federaser", ""

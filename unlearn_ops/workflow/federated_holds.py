"""Legal holds on a federation's site (issue 13): its withdrawal waits while a hold stands.

A hold naming a site (`unlearn-ops hold add --client ID`:
:func:`~unlearn_ops.deletion.holds.place_hold`) keeps the site's keyed hash. A withdrawal of
that site, from the inbox or typed at the CLI, is received (its deadline clock starts) and
marked `held` in the ledger, and nothing else happens: the drain sets it aside in the inbox,
`federation remove` refuses it. Releasing the hold queues it again, or names it to run
again. An expulsion for `poisoning` is not held: it protects the model the other sites are
served.
"""

from __future__ import annotations

from datetime import datetime

from unlearn_ops.deletion.holds import find_held, fold_holds
from unlearn_ops.errors import HoldError
from unlearn_ops.workflow.batch import mark_held
from unlearn_ops.workflow.federated import RemovalReason, record_withdrawal
from unlearn_ops.workflow.workspace import Workspace

__all__ = ["hold_back_withdrawal", "receive_unless_held"]


def hold_back_withdrawal(
    workspace: Workspace,
    request_id: str,
    client_hash: str,
    signed_by: str,
    now: datetime | None = None,
) -> str | None:
    """Why a legal hold on the site keeps its withdrawal waiting (`hold-...: reason`), or None.

    A held withdrawal is received (its deadline clock starts, as a record request's) and
    marked `held` in the ledger with the holds' reasons; releasing the hold queues it again
    (:func:`unlearn_ops.deletion.holds.release_hold`). A rerun while the hold stands adds
    nothing.

    Raises:
        InvalidRequestError: the client is not in the federation (nothing is recorded).
    """
    found = find_held(workspace, {request_id: [client_hash]}, now).get(request_id)
    if not found:
        return None
    record_withdrawal(workspace, request_id, client_hash, "withdrawal", signed_by)
    return mark_held(
        workspace,
        request_id,
        found,
        fold_holds(workspace.ledger.entries()),
        workspace.ledger.request(request_id),
        clients_held=1,
        mode="whole",
    )


def receive_unless_held(
    workspace: Workspace,
    request_id: str,
    client_hash: str,
    reason: RemovalReason,
    signed_by: str,
) -> None:
    """Record a verified removal as `received`, unless a legal hold on the site stands.

    A hold holds back a withdrawal (an erasure the site asked for); an expulsion for
    `poisoning` goes ahead, since it protects the model the other sites are served.

    Raises:
        HoldError: the site is under legal hold (the ledger says `held`; nothing else
            changed): run the request again once the hold is released.
        InvalidRequestError: the client is not in the federation (nothing is recorded).
    """
    if reason == "withdrawal":
        why = hold_back_withdrawal(workspace, request_id, client_hash, signed_by)
        if why is not None:
            raise HoldError(
                f"request {request_id} withdraws a site under legal hold ({why}): not removed",
                "run it again once the hold is released (`unlearn-ops hold list`)",
            )
    record_withdrawal(workspace, request_id, client_hash, reason, signed_by)

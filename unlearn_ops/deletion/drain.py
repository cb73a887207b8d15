"""The drain: every unfinished request of the inbox forgotten, batch after batch, exactly once.

A drain holds the workspace lock, claims what the inbox holds (requests that a crashed run
had claimed too), rebuilds the batch (:func:`~unlearn_ops.deletion.intake.claim_batch`;
requests the data never held fail alone), asks the approver when approval is required, and
runs the forget it is given once for the batch. The failure policy:

- refused by the approver: the batch's requests fail with "rejected by the approver: ..."
  (in the inbox and the ledger);
- the forget raised an :class:`~unlearn_ops.errors.UnlearnOpsError` (gates failed: the
  version is registered, not promoted, and the ledger says so; or the batch was refused,
  nothing changed): the requests fail with its message, in the inbox only, and
  `unlearn-ops inbox --retry` puts them back;
- anything else propagates: the requests stay claimed, and the next drain takes them.

It loops until nothing is left, so requests that arrive meanwhile join the next batch of
the same drain. With `release.min_batch` above 1 in params.yaml, it claims nothing until
that many requests wait or the oldest one's deadline forces a release
(:func:`~unlearn_ops.privacy.mitigations.release_due`: a release of one record lets
anyone who holds both versions single it out, issue 12); held requests stay pending.
The forget (the flow stage) and the approver (a
pause in Prefect) are passed in: this module knows no orchestrator.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from unlearn_ops.deletion.intake import claim_batch, complete_batch, fail_requests
from unlearn_ops.errors import ConfigError, UnlearnOpsError
from unlearn_ops.privacy.mitigations import release_due
from unlearn_ops.timestamps import parse_datetime

if TYPE_CHECKING:
    from unlearn_ops.deletion.requests import ForgetRequest
    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["Approver", "Forget", "drain"]

Forget = Callable[["Workspace", Sequence["ForgetRequest"]], dict[str, Any]]
Approver = Callable[["Workspace", Sequence["ForgetRequest"]], tuple[bool, str]]


def drain(
    ws: Workspace,
    forget: Forget,
    *,
    run: str | None = None,
    require_approval: bool | None = None,
    approver: Approver | None = None,
    before_claim: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Claim and forget every unfinished request in the inbox, batch after batch.

    Args:
        ws: the workspace.
        forget: forgets one batch and returns its answer (`version`, or `noop` and
            `served_by`); the forget pipeline's stage.
        run: a name for the claim (the flow run id); a fresh one when None.
        require_approval: ask the approver before retraining (settings by default).
        approver: asked with each batch; returns (approved, reason).
        before_claim: called (no arguments) before each claim, holding the lock: the
            event flow gathers the requests of queued runs and events there.

    Returns:
        run, batches (each the forget's answer), failed requests with their reasons, and
        the inbox's counts.

    Raises:
        ConfigError: approval is required and no approver was given.
    """

    run = run or f"drain-{uuid.uuid4().hex[:12]}"
    approval = ws.settings.approval_required if require_approval is None else require_approval
    if approval and approver is None:
        raise ConfigError("the drain", ["approval is required, and nobody was given to ask"])
    batches: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    with ws.lock():
        while True:
            if before_claim is not None:
                before_claim()
            if _held(ws):
                break
            claimed = claim_batch(ws, run)
            if claimed is None:
                break
            failed.update(claimed.failed)
            batch = claimed.requests
            if not batch:
                continue
            if approval and approver is not None:
                approved, reason = approver(ws, batch)
                if not approved:
                    why = f"rejected by the approver: {reason or 'no reason given'}"
                    refused = dict.fromkeys((r.request_id for r in batch), why)
                    fail_requests(ws, refused)
                    failed.update(refused)
                    continue
            try:
                answer = forget(ws, batch)
            except UnlearnOpsError as exc:
                refused = dict.fromkeys((r.request_id for r in batch), str(exc))
                fail_requests(ws, refused, in_ledger=False)
                failed.update(refused)
                continue
            complete_batch(ws, batch, answer, run)
            batches.append(answer)
    answer = {"run": run, "batches": batches, "failed": failed, "inbox": ws.inbox.counts()}
    if ws.params.release.min_batch > 1:
        answer["held"] = len(ws.inbox.entries("pending"))
    return answer


def _held(ws: Workspace) -> bool:
    """Whether the minimum batch per release holds the waiting requests back."""
    release = ws.params.release
    if release.min_batch <= 1:
        return False
    waiting = ws.inbox.entries("pending") + ws.inbox.entries("processing")
    if not waiting:
        return False  # the claim finds nothing and ends the drain
    return not release_due(
        [parse_datetime(entry.received_at) for entry in waiting],
        datetime.now(UTC),
        min_batch=release.min_batch,
        deadline_days=ws.params.compliance.deadline_days,
        margin_days=release.deadline_margin_days,
    )

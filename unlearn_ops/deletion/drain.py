"""The drain: every unfinished request of the inbox forgotten, batch after batch, exactly once.

A drain holds the workspace lock, releases the legal holds whose end date passed, claims
what the inbox holds (requests that a crashed run had claimed too), rebuilds the batch
(:func:`~unlearn_ops.deletion.intake.claim_batch`; requests the data never held fail
alone), sets aside what a legal hold stands on (`held` in the inbox and the ledger, until
the hold is released: :func:`~unlearn_ops.workflow.batch.hold_back`), asks the approval
rules (:func:`~unlearn_ops.deletion.approval.decide_approval`) and, where they say so, the
approver, and runs the forget it is given once for the batch. The failure policy:

- refused by the approver: the batch's requests fail with "rejected by NAME: ..." (in the
  inbox, and in the ledger with the approver, the rule and the reason);
- the forget raised an :class:`~unlearn_ops.errors.UnlearnOpsError` (gates failed: the
  version is registered, not promoted, and the ledger says so; or the batch was refused,
  nothing changed): the requests fail with its message, in the inbox only, and
  `unlearn-ops inbox --retry` puts them back;
- anything else propagates: the requests stay claimed, and the next drain takes them.

A federation client's withdrawal (issue 13) goes to the `withdraw` stage it is given (the
client's group retrained without it, exactly), one request at a time, beside the record
batches. The approval rules apply to it as to a batch (a rule's `withdrawal` condition
picks it out, `reasons` match its reason, record counts never hold for it; the approver
reads :func:`~unlearn_ops.deletion.approval.withdrawal_markdown`); a legal hold on the site
sets it aside, whole, before anyone is asked (holds on records or a person never name a
site). Without a stage (no deployment configured) it fails with what to do, before anyone
is asked.

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
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from unlearn_ops.deletion.approval import (
    Decision,
    approval_markdown,
    decide_approval,
    describe_batch,
    may_ask,
    record_approval,
    tag_approval,
    withdrawal_markdown,
    withdrawal_summary,
)
from unlearn_ops.deletion.holds import release_expired
from unlearn_ops.deletion.intake import claim_batch, complete_batch, fail_requests
from unlearn_ops.errors import ConfigError, GateFailedError, UnlearnOpsError
from unlearn_ops.privacy.mitigations import release_due
from unlearn_ops.timestamps import parse_datetime
from unlearn_ops.workflow.batch import hold_back

if TYPE_CHECKING:
    from unlearn_ops.deletion.inbox import InboxEntry
    from unlearn_ops.deletion.requests import ForgetRequest
    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["NO_DEPLOYMENT", "Approver", "Forget", "Withdraw", "drain"]

Forget = Callable[["Workspace", Sequence["ForgetRequest"]], dict[str, Any]]
# Removes the client one withdrawal names; its answer carries the `version` registered.
Withdraw = Callable[["Workspace", "InboxEntry"], dict[str, Any]]
NO_DEPLOYMENT = (
    "a client withdrawal needs the federation's Flower deployment: set "
    "UNLEARN_OPS_FLOWER_HOME for the drain, or run `unlearn-ops federation remove`"
)
# Asked with (workspace, the approval summary, the form's text): (approved, reason) or
# (approved, reason, approver's name). The summary's `requests` are the ids it decides.
Approver = Callable[["Workspace", Mapping[str, Any], str], tuple[bool, str] | tuple[bool, str, str]]


def drain(
    ws: Workspace,
    forget: Forget,
    *,
    run: str | None = None,
    require_approval: bool | None = None,
    approver: Approver | None = None,
    before_claim: Callable[[], None] | None = None,
    withdraw: Withdraw | None = None,
) -> dict[str, Any]:
    """Claim and forget every unfinished request in the inbox, batch after batch.

    Args:
        ws: the workspace.
        forget: forgets one batch and returns its answer (`version`, or `noop` and
            `served_by`); the forget pipeline's stage.
        run: a name for the claim (the flow run id); a fresh one when None.
        require_approval: True always asks the approver before retraining, False never
            does; None (the default) asks where `UNLEARN_OPS_APPROVAL_REQUIRED` is set,
            else where params.yaml's approval rules say so.
        approver: asked with each batch or withdrawal that the rules send to a person,
            given its approval summary and form; returns (approved, reason) or (approved,
            reason, approver's name).
        before_claim: called (no arguments) before each claim, holding the lock: the
            event flow gathers the requests of queued runs and events there.
        withdraw: removes the federation client a withdrawal names (the flow stage);
            None fails withdrawals with :data:`NO_DEPLOYMENT`.

    Returns:
        run, batches (each the forget's answer), withdrawals (request id -> version),
        failed requests with their reasons, held requests with the holds' reasons, and the
        inbox's counts.

    Raises:
        ConfigError: approval may be asked (settings or rules) and no approver was given.
    """

    run = run or f"drain-{uuid.uuid4().hex[:12]}"
    forced = require_approval
    if forced is None and ws.settings.approval_required:
        forced = True
    rules = ws.params.approval
    if may_ask(rules, forced) and approver is None:
        raise ConfigError("the drain", ["approval is required, and nobody was given to ask"])
    # Rules that can only say `auto` need no summary: nothing to ask, nothing to record.
    decide = forced is not None or bool(rules.rules) or rules.default == "ask"
    batches: list[dict[str, Any]] = []
    withdrawn: dict[str, str] = {}
    failed: dict[str, str] = {}
    held: dict[str, str] = {}
    with ws.lock():
        release_expired(ws)
        while True:
            if before_claim is not None:
                before_claim()
            if _release_withheld(ws):
                break
            claimed = claim_batch(ws, run)
            if claimed is None:
                break
            failed.update(claimed.failed)
            for entry in claimed.withdrawals:
                why_held = _withdrawal_held(ws, entry)
                if why_held is not None:
                    held[entry.request_id] = why_held
                    continue
                facts: dict[str, Any] | str | None = None
                if decide and withdraw is not None:
                    summary = withdrawal_summary(ws, entry)
                    decision = decide_approval(rules, summary, [entry.reason], forced)
                    form = withdrawal_markdown(summary, entry.reason, decision.rule)
                    facts = _approve(ws, summary, form, decision, approver)
                    if isinstance(facts, str):
                        failed[entry.request_id] = facts
                        continue
                outcome = _withdraw(ws, entry, withdraw, run)
                if isinstance(outcome, str):
                    withdrawn[entry.request_id] = outcome
                    if isinstance(facts, dict):
                        tag_approval(ws, outcome, facts)
                else:
                    failed.update(outcome)
            kept = hold_back(ws, claimed.requests)
            for request_id, why in kept.held.items():
                ws.inbox.hold([request_id], {"reason": f"under legal hold: {why}"})
            held.update(kept.held)
            batch = kept.proceed
            if not batch:
                continue
            facts = None
            if decide:
                summary, _ = describe_batch(ws, batch)
                decision = decide_approval(rules, summary, [r.reason for r in batch], forced)
                form = approval_markdown(summary, decision.rule)
                facts = _approve(ws, summary, form, decision, approver)
                if isinstance(facts, str):
                    failed.update(dict.fromkeys((r.request_id for r in batch), facts))
                    continue
            try:
                answer = forget(ws, batch)
            except UnlearnOpsError as exc:
                refused = dict.fromkeys((r.request_id for r in batch), str(exc))
                fail_requests(ws, refused, in_ledger=False)
                failed.update(refused)
                continue
            complete_batch(ws, batch, answer, run)
            if facts is not None and answer.get("version"):
                tag_approval(ws, str(answer["version"]), facts)
            batches.append(answer)
    result: dict[str, Any] = {
        "run": run,
        "batches": batches,
        "withdrawals": withdrawn,
        "failed": failed,
        "held": held,
        "inbox": ws.inbox.counts(),
    }
    if ws.params.release.min_batch > 1:
        result["awaiting_release"] = len(ws.inbox.entries("pending"))
    return result


def _withdrawal_held(ws: Workspace, entry: InboxEntry) -> str | None:
    """Why a legal hold on the site keeps the withdrawal waiting (set aside, `held` in the
    inbox and the ledger), or None."""
    if entry.client_hash is None:
        return None
    from unlearn_ops.workflow.federated_holds import hold_back_withdrawal

    why = hold_back_withdrawal(ws, entry.request_id, entry.client_hash, entry.authenticated_by)
    if why is not None:
        ws.inbox.hold([entry.request_id], {"reason": f"under legal hold: {why}"})
    return why


def _withdraw(
    ws: Workspace, entry: InboxEntry, withdraw: Withdraw | None, run: str
) -> str | dict[str, str]:
    """Serve one withdrawal: the version that serves it, or {request id: why it failed}.

    Failures follow the forget's policy: in the inbox (and the ledger, except after a
    failed gate, which the stage recorded itself); `inbox --retry` puts them back.
    """
    if withdraw is None:
        refused = {entry.request_id: NO_DEPLOYMENT}
        fail_requests(ws, refused)
        return refused
    try:
        answer = withdraw(ws, entry)
    except UnlearnOpsError as exc:
        refused = {entry.request_id: str(exc)}
        fail_requests(ws, refused, in_ledger=not isinstance(exc, GateFailedError))
        return refused
    version = str(answer["version"])
    how: dict[str, str] = {k: str(answer[k]) for k in ("method", "note") if k in answer}
    ws.inbox.complete([entry.request_id], {"version": version, "run": run, **how})
    return version


def _approve(
    ws: Workspace,
    summary: Mapping[str, Any],
    form: str,
    decision: Decision,
    approver: Approver | None,
) -> dict[str, Any] | str | None:
    """Ask the approver where the decision says so; the approval's facts, or why it was
    rejected (the requests are then failed, with who, why and by which rule), or None where
    nothing is recorded (approval switched off by the caller)."""
    request_ids: list[str] = list(summary["requests"])
    name, reason = None, ""
    if decision.action == "ask" and approver is not None:
        approved, reason, *who = approver(ws, summary, form)
        name = (who[0] if who else "") or None
        if not approved:
            why = f"rejected by {name or 'the approver'}: {reason or 'no reason given'}"
            for request_id in request_ids:
                ws.inbox.fail([request_id], why)
                ws.ledger.append(
                    "failed",
                    request_id,
                    reason=why,
                    approval={
                        "decision": "rejected",
                        "rule": decision.rule,
                        "approver": name,
                        "reason": reason,
                    },
                )
            return why
    if decision.action == "ask" or decision.rule != "require_approval=False":
        return record_approval(ws, request_ids, decision, summary, approver=name, reason=reason)
    return None


def _release_withheld(ws: Workspace) -> bool:
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

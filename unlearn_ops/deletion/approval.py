"""Approval of a batch: which rule decides, what the approver is shown, what is recorded.

Before retraining for a batch, a drain asks :func:`decide_approval`: the rules of
`approval` in params.yaml (first match wins, then `default`), or "always ask" when
`UNLEARN_OPS_APPROVAL_REQUIRED` is set. `ask` pauses the run for a person (in Prefect's UI,
:mod:`unlearn_ops.adapters.prefect.approval`), who reads what this module builds: the
shards that retrain, how much, the change to expect, and the rule that asked. The decision,
the rule and the approver's name go to the ledger (`approval`, or the `failed` entry of a
rejected request) and to the new version's `unlearn.approval.*` tags
(:func:`record_approval`, :func:`tag_approval`); a rejected batch changes nothing else
(see :mod:`unlearn_ops.deletion.drain`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from unlearn_ops.adapters.mlflow.registry import VersionInfo
    from unlearn_ops.deletion.inbox import InboxEntry
    from unlearn_ops.deletion.requests import ForgetRequest
    from unlearn_ops.params import ApprovalCondition, ApprovalParams
    from unlearn_ops.sisa.planning import RetrainingPlan
    from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "ALWAYS_ASK",
    "Decision",
    "approval_markdown",
    "approval_summary",
    "decide_approval",
    "describe_batch",
    "forget_history",
    "may_ask",
    "record_approval",
    "tag_approval",
    "withdrawal_markdown",
    "withdrawal_summary",
]

ALWAYS_ASK = "UNLEARN_OPS_APPROVAL_REQUIRED"


@dataclass(frozen=True)
class Decision:
    """What the rules decided for a batch.

    Attributes:
        action: `auto` (retrain without asking) or `ask` (pause for a person).
        rule: which rule decided: its name, `rule N`, `default`, or `UNLEARN_OPS_APPROVAL_REQUIRED`.
    """

    action: Literal["auto", "ask"]
    rule: str


def may_ask(params: ApprovalParams, forced: bool | None) -> bool:
    """Whether some batch could be asked about (a drain needs an approver then)."""
    if forced is not None:
        return forced
    return params.default == "ask" or any(rule.then == "ask" for rule in params.rules)


def _holds(condition: ApprovalCondition, summary: Mapping[str, Any], reasons: set[str]) -> bool:
    """Every condition given holds for the batch (an unknown expected change fails)."""
    change = summary.get("expected_accuracy_change")
    share = summary.get("retraining_fraction")
    records = summary.get("records")  # None: a client's withdrawal, which names no record
    checks = [
        condition.withdrawal is None
        or bool(summary.get("withdrawal", False)) == condition.withdrawal,
        condition.max_retrain_share is None
        or (share is not None and share <= condition.max_retrain_share),
        condition.max_accuracy_change is None
        or (change is not None and -change <= condition.max_accuracy_change),
        condition.min_records is None or (records is not None and records >= condition.min_records),
        condition.max_records is None or (records is not None and records <= condition.max_records),
        condition.reasons is None or bool(reasons.intersection(condition.reasons)),
    ]
    return all(checks)


def decide_approval(
    params: ApprovalParams,
    summary: Mapping[str, Any],
    reasons: Sequence[str],
    forced: bool | None = None,
) -> Decision:
    """The decision for a batch: the first rule whose `when` holds, else `default`.

    Args:
        params: `approval` of params.yaml.
        summary: the batch's :func:`approval_summary`.
        reasons: the reasons of its requests.
        forced: True always asks (`UNLEARN_OPS_APPROVAL_REQUIRED`), False never does (a
            caller that decided already); None lets the rules decide.
    """
    if forced is not None:
        return Decision("ask", ALWAYS_ASK) if forced else Decision("auto", "require_approval=False")
    for number, rule in enumerate(params.rules, start=1):
        if _holds(rule.when, summary, set(reasons)):
            return Decision(rule.then, rule.name or f"rule {number}")
    return Decision(params.default, "default")


def record_approval(
    workspace: Workspace,
    request_ids: Sequence[str],
    decision: Decision,
    summary: Mapping[str, Any],
    *,
    approver: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """An `approval` entry per request (decision, rule, approver, what was shown); the facts."""
    facts = {
        "decision": "auto" if decision.action == "auto" else "approved",
        "rule": decision.rule,
        "approver": approver,
        "reason": reason,
        "records": summary.get("records"),
        "retraining_fraction": summary.get("retraining_fraction"),
        "expected_accuracy_change": summary.get("expected_accuracy_change"),
    }
    if summary.get("withdrawal"):
        facts["groups"] = summary.get("groups")
    for request_id in request_ids:
        workspace.ledger.append("approval", request_id, **facts)
    return facts


def tag_approval(workspace: Workspace, version: str, facts: Mapping[str, Any]) -> None:
    """The version's `unlearn.approval.decision`, `.rule` and `.approver` tags.

    A version the registry does not hold (a forget seam that registers nothing, as in
    tests) is left alone: the ledger's `approval` entries say it all.
    """
    registry = workspace.registry()
    if version not in {v.version for v in registry.versions()}:
        return
    registry.set_version_tag(version, "approval.decision", str(facts["decision"]))
    registry.set_version_tag(version, "approval.rule", str(facts["rule"]))
    registry.set_version_tag(version, "approval.approver", str(facts["approver"] or "-"))


def forget_history(versions: Sequence[VersionInfo], last: int = 10) -> list[float]:
    """Accuracy change of each forget version against its parent, oldest first (at most
    the `last` ones): what an approver is told to expect."""
    accuracy = {v.version: v.tag("accuracy") for v in versions}
    changes = []
    for info in versions:
        parent = accuracy.get(info.tag("parent_version"))
        if info.tag("kind") == "forget" and parent and info.tag("accuracy"):
            changes.append(float(info.tag("accuracy")) - float(parent))
    return changes[-last:]


def approval_summary(
    workspace: Workspace,
    requests: Sequence[ForgetRequest],
    plan: RetrainingPlan,
    history: Sequence[float] = (),
) -> dict[str, Any]:
    """What an approver needs to decide: which shards, how much retraining, expected change.

    Args:
        history: accuracy changes of earlier forget versions (newest last); their mean is
            the expected change, as no model of this data predicts it better.
    """
    expected = sum(history) / len(history) if history else None
    return {
        "requests": [r.request_id for r in requests],
        "records": len({h for r in requests for h in r.record_hashes(workspace.settings)}),
        "shards": plan.shard_ids,
        "stages_to_retrain": sum(s.stages_to_train for s in plan.shards),
        "retraining_fraction": round(plan.fraction, 4),
        "expected_accuracy_change": None if expected is None else round(expected, 4),
        "based_on_versions": len(history),
    }


def approval_markdown(summary: Mapping[str, Any], rule: str | None = None) -> str:
    """The approval form's description, as the Prefect UI shows it."""
    change = summary["expected_accuracy_change"]
    expected = (
        f"{change:+.4f} (mean of the last {summary['based_on_versions']} forget versions)"
        if change is not None
        else "unknown (no forget version yet)"
    )
    requests = summary["requests"]
    shown = ", ".join(requests[:10]) + (
        f" and {len(requests) - 10} more" if len(requests) > 10 else ""
    )
    asked = f"- Asked by the rule: {rule}\n\n" if rule else ""
    return (
        f"**Forget {summary['records']} records** for {len(requests)} request(s): {shown}.\n\n"
        f"- Shards to retrain: {summary['shards'] or 'none'}\n"
        f"- Stages to retrain: {summary['stages_to_retrain']} "
        f"({summary['retraining_fraction']:.1%} of a full training)\n"
        f"- Expected accuracy change: {expected}\n\n"
        f"{asked}"
        "Approve to retrain and register the new version; reject with a reason to refuse "
        "the requests. Give your name: it goes to the ledger with your decision and reason."
    )


def describe_batch(
    workspace: Workspace, requests: Sequence[ForgetRequest], rule: str | None = None
) -> tuple[dict[str, Any], str]:
    """The approval summary of a batch and its form's text (the registry's history read)."""

    plan = workspace.ensemble.plan_forget([r for request in requests for r in request.record_ids])
    history = forget_history(workspace.registry().versions())
    summary = approval_summary(workspace, requests, plan, history)
    return summary, approval_markdown(summary, rule)


def withdrawal_summary(workspace: Workspace, entry: InboxEntry) -> dict[str, Any]:
    """What an approver needs to decide a client's withdrawal: the group, the method, the cost.

    The method is the drain's (`unlearning.withdrawals`, exact where FedEraser cannot run).
    An exact removal trains the client's group again from scratch with its remaining
    clients, so the retraining share is those clients over every client that remains in
    the federation (rounds cancel out); FedEraser's share is that times its client-epochs
    over a retrain's (:meth:`~unlearn_ops.federated.config.FederationParams.erasure_cost`).
    A workspace without a federation, or a client that is no longer in it, gives no group
    and no share (the withdrawal stage then refuses it).
    """
    from unlearn_ops.errors import FederationError
    from unlearn_ops.federated.config import FederationParams
    from unlearn_ops.workflow.federated import active_clients, client_group, read_state
    from unlearn_ops.workflow.federated_provisional import inbox_removal_method

    try:
        state = read_state(workspace)
    except FederationError:
        state = {"clients": [], "removed": []}
    active = active_clients(state)
    group = None if entry.client_hash is None else client_group(active, entry.client_hash)
    retraining = [
        c for c in active if int(c["group"]) == group and c["client_hash"] != entry.client_hash
    ]
    method, note = "exact", ""
    share = None
    if group is not None and entry.client_hash is not None:  # (the hash: for the type checker)
        method, note = inbox_removal_method(workspace, entry.client_hash)
        share = len(retraining) / max(1, len(active) - 1)
        if method == "federaser":
            share *= FederationParams.model_validate(state["params"]).erasure_cost()
    return {
        "requests": [entry.request_id],
        "withdrawal": True,
        "client": entry.client_hash,
        "records": None,
        "groups": [] if group is None else [group],
        "clients_retraining": len(retraining),
        "retraining_fraction": None if share is None else round(share, 4),
        "method": method,
        "method_note": note,
        "expected_accuracy_change": None,
        "based_on_versions": 0,
    }


def withdrawal_markdown(summary: Mapping[str, Any], reason: str, rule: str | None = None) -> str:
    """The approval form of a client's withdrawal, as the Prefect UI shows it."""
    groups = summary["groups"]
    erase = summary.get("method") == "federaser"
    if groups and erase:
        retrain = (
            f"- Group to rebuild: {groups[0]}, by FedEraser from its stored updates with its "
            f"{summary['clients_retraining']} remaining client(s) "
            f"({summary['retraining_fraction']:.1%} of a full federation retrain, in "
            "client-epochs)\n"
        )
        method = (
            "- Method: FedEraser (approximate: the version is provisional, and the exact "
            "removal is owed by the request's deadline: `federation remove-exactly`)\n\n"
        )
    elif groups:
        retrain = (
            f"- Group to retrain: {groups[0]}, from scratch with its "
            f"{summary['clients_retraining']} remaining client(s) "
            f"({summary['retraining_fraction']:.1%} of a full federation retrain)\n"
        )
        note = f"; {summary['method_note']}" if summary.get("method_note") else ""
        method = (
            "- Method: exact (the group's new model is certified against a fresh "
            f"federation without the client{note})\n\n"
        )
    else:
        retrain = "- Group to retrain: none found (the client is not in this federation)\n"
        method = "- Method: none (nothing to remove)\n\n"
    asked = f"- Asked by the rule: {rule}\n\n" if rule else ""
    return (
        f"**Remove federation client** `{str(summary['client'])[:16]}` (keyed hash) for "
        f"request {summary['requests'][0]}: {reason or 'no reason given'}.\n\n"
        f"{retrain}{method}"
        f"{asked}"
        "Approve to remove the client and register the new version; reject with a reason to "
        "refuse the withdrawal. Give your name: it goes to the ledger with your decision and "
        "reason."
    )

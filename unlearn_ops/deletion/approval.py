"""What an approver of a batch is shown: the shards that retrain, how much, the change to expect.

When `UNLEARN_OPS_APPROVAL_REQUIRED` is set, a drain pauses before each retraining and asks
a person (in Prefect's UI, :mod:`unlearn_ops.adapters.prefect.approval`); this module
builds what they read. A refused batch fails with the approver's reason (see
:mod:`unlearn_ops.deletion.drain`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unlearn_ops.adapters.mlflow.registry import VersionInfo
    from unlearn_ops.deletion.requests import ForgetRequest
    from unlearn_ops.sisa.planning import RetrainingPlan
    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["approval_markdown", "approval_summary", "describe_batch", "forget_history"]


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


def approval_markdown(summary: Mapping[str, Any]) -> str:
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
    return (
        f"**Forget {summary['records']} records** for {len(requests)} request(s): {shown}.\n\n"
        f"- Shards to retrain: {summary['shards'] or 'none'}\n"
        f"- Stages to retrain: {summary['stages_to_retrain']} "
        f"({summary['retraining_fraction']:.1%} of a full training)\n"
        f"- Expected accuracy change: {expected}\n\n"
        "Approve to retrain and register the new version; reject with a reason to refuse "
        "the requests (the reason goes to the ledger)."
    )


def describe_batch(
    workspace: Workspace, requests: Sequence[ForgetRequest]
) -> tuple[dict[str, Any], str]:
    """The approval summary of a batch and its form's text (the registry's history read)."""

    plan = workspace.ensemble.plan_forget([r for request in requests for r in request.record_ids])
    history = forget_history(workspace.registry().versions())
    summary = approval_summary(workspace, requests, plan, history)
    return summary, approval_markdown(summary)

"""The approval of a batch or a withdrawal: the flow run pauses until a person answers in
Prefect's UI."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from unlearn_ops.adapters.prefect.api import translated

if TYPE_CHECKING:
    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["ask_approval"]

logger = logging.getLogger("unlearn_ops.deletion.intake")


def ask_approval(
    ws: Workspace, summary: Mapping[str, Any], description: str
) -> tuple[bool, str, str]:
    """Pause the current flow run with an approval form; (approved, reason, approver).

    The form (:func:`unlearn_ops.deletion.approval.approval_markdown` for a batch: which
    shards retrain, how much, the accuracy change to expect; `withdrawal_markdown` for a
    client's withdrawal: the group that retrains) names the rule that asked, and asks for
    the approver's name (it goes to the ledger and the version's tags). Call it inside a
    flow run.

    Raises:
        OrchestratorError: Prefect's API failed while pausing or reading the answer.
    """
    from prefect.flow_runs import pause_flow_run
    from prefect.input import RunInput

    class Approval(RunInput):
        approve: bool
        reason: str = ""
        approver: str = ""

    logger.warning("waiting for approval: %s", summary)
    with translated("waiting for an approval"):
        answer = pause_flow_run(
            wait_for_input=Approval.with_initial_data(description=description, approve=False),
            timeout=ws.settings.approval_timeout_seconds,
            poll_interval=2,
        )
    return bool(answer.approve), answer.reason, answer.approver.strip()

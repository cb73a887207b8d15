"""Flow runs of a deployment that wait (scheduled or pending), and cancelling one."""

from __future__ import annotations

import uuid
from typing import Any

from unlearn_ops.adapters.prefect.api import translated

__all__ = ["cancel_run", "queued_runs"]

_PAGE = 200  # the API's page size for flow runs


def queued_runs(deployment_id: str, *, exclude: str = "") -> list[Any]:
    """Runs of the deployment that wait (scheduled or pending), `exclude` left out.

    Raises:
        OrchestratorError: the API answered an error or could not be reached.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    runs: list[Any] = []
    with translated("reading queued flow runs"), get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[uuid.UUID(deployment_id)])
                ),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
                    )
                ),
                limit=_PAGE,
                offset=len(runs),
            )
            runs.extend(page)
            if len(page) < _PAGE:
                break
    return [run for run in runs if str(run.id) != exclude]


def cancel_run(run_id: uuid.UUID | str, message: str) -> None:
    """Move a flow run to Cancelled with `message` (forced: it never started).

    Raises:
        OrchestratorError: the API answered an error or could not be reached.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with translated("cancelling a flow run"), get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(str(run_id)), Cancelled(message=message), force=True)

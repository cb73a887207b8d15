"""The `purge-superseded` flow: delete what still holds forgotten records once retention ends.

Serve it on a schedule (a daily purge is enough: a request becomes due once a day at most)::

    from pipelines.purge import purge_superseded
    purge_superseded.serve(name="nightly", cron="0 3 * * *", parameters={"workspace": "ws"})

or build a deployment with :func:`purge_deployment` and pass it to `prefect.serve(...)`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from pipelines.tasks import as_task
from unlearn_ops.compliance import purge
from unlearn_ops.workflow.workspace import Workspace

plan_purge = as_task(purge.plan_purge, "plan-purge")
execute_purge = as_task(purge.execute_purge, "execute-purge")


@flow(name="purge-superseded")
def purge_superseded(
    workspace: str, now: str | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Delete superseded versions, DVC objects and checkpoints whose retention has ended.

    Args:
        workspace: the workspace directory.
        now: the moment to judge retention at (ISO 8601); the current time when None.
        dry_run: only report what would go, and when.

    Example:
        >>> purge_superseded("ws", dry_run=True)  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    with ws.lock():
        plan = plan_purge(ws, purge.parse_now(now))
        if not dry_run:
            plan = execute_purge(ws, plan)
    return {"dry_run": dry_run, **plan.to_dict()}


def purge_deployment(
    workspace: str, *, name: str = "purge-superseded", cron: str = "0 3 * * *"
) -> Any:
    """A deployment of :func:`purge_superseded` on a cron schedule, for `prefect.serve(...)`."""
    return purge_superseded.to_deployment(name=name, cron=cron, parameters={"workspace": workspace})

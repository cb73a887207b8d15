"""Deletion requests from real services: the flows that drain the inbox and react to events.

Wiring only; the logic lives in the library:

- `drain-inbox`: forget everything the inbox holds (the S3 listener and the HTTP intake
  put requests there); run by `unlearn-ops listen` after each burst. It is
  :func:`unlearn_ops.deletion.drain.drain` with the forget pipeline's stage, Prefect's
  approval pause and, where `UNLEARN_OPS_FLOWER_HOME` names a Flower deployment, the
  stage that removes a withdrawn federation client.
- `forget-on-deletion-event`: the flow of the `unlearn-ops serve` deployment, triggered by
  the event `unlearn.deletion.requested` (payload: a signed envelope). It records its own
  request (:class:`~unlearn_ops.adapters.prefect.intake.PrefectEventIntake`), gathers the
  burst (:class:`~unlearn_ops.deletion.coalescing.Gatherer`: queued runs coalesced and
  cancelled, the event store read) until it is complete, then drains once.
- the same deployment runs on an interval with no event: a sweep that finishes what a
  crash left behind (claimed requests are picked up again).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prefect import flow

from pipelines.federated import deployment_withdrawals
from pipelines.stages import forget_batch
from unlearn_ops.adapters.prefect import events
from unlearn_ops.adapters.prefect.approval import ask_approval
from unlearn_ops.adapters.prefect.events import EVENT_NAME
from unlearn_ops.adapters.prefect.intake import PrefectEventIntake, status_word
from unlearn_ops.deletion.coalescing import Gatherer
from unlearn_ops.deletion.drain import drain
from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "EVENT_NAME",
    "deployment_for",
    "drain_inbox",
    "emit_deletion_request",
    "forget_on_deletion_event",
    "resource_id",
    "serve_deployment",
]

DEPLOYMENT_NAME = "forget-on-deletion-events"


def resource_id(ws: Workspace) -> str:
    """The Prefect event resource a workspace's deployment listens to."""
    return events.resource_id(ws.model_name)


@flow(name="drain-inbox")
def drain_inbox(workspace: str, require_approval: bool | None = None) -> dict[str, Any]:
    """Forget every request waiting in the workspace's inbox (one retraining per shard);
    remove the federation clients whose withdrawals wait there."""
    from prefect.runtime import flow_run

    ws = Workspace.open(workspace)
    return drain(
        ws,
        forget_batch,
        run=str(flow_run.id or "") or None,
        require_approval=require_approval,
        approver=ask_approval,
        withdraw=deployment_withdrawals(ws.settings),
    )


@flow(name="forget-on-deletion-event")
def forget_on_deletion_event(
    workspace: str,
    envelope: dict[str, Any] | None = None,
    delivery_id: str | None = None,
    window_seconds: float | None = None,
) -> dict[str, Any]:
    """Record the event's request, gather the burst (coalescing queued runs), drain.

    Args:
        workspace: the workspace directory.
        envelope: the event's payload: a signed request (None for a sweep run).
        delivery_id: `prefect-event:<event id>`: an event delivered twice records once.
        window_seconds: the coalescing window (`UNLEARN_OPS_COALESCE_SECONDS` by default).
    """
    from prefect.runtime import deployment, flow_run

    started = time.monotonic()
    ws = Workspace.open(workspace)
    me = str(flow_run.id or "")
    intake = PrefectEventIntake(
        ws.inbox, resource_id(ws), deployment_id=str(deployment.id or ""), run_id=me
    )
    status = None
    if envelope is not None:
        status = status_word(intake.receive(envelope, delivery_id or f"prefect-run:{me}"))
    window = ws.settings.coalesce_seconds if window_seconds is None else window_seconds
    gather = Gatherer(intake.poll, window, started=started)
    result = drain(
        ws,
        forget_batch,
        run=me or None,
        approver=ask_approval,
        before_claim=gather,
        withdraw=deployment_withdrawals(ws.settings),
    )
    return {**result, "event": status, "coalesced_runs": intake.coalesced}


def deployment_for(ws: Workspace, *, sweep_seconds: float | None = 600.0) -> Any:
    """The workspace's event-triggered deployment (with a sweep interval), not yet served."""
    from prefect.events import DeploymentEventTrigger
    from prefect.types.entrypoint import EntrypointType

    trigger = DeploymentEventTrigger(
        name=f"deletion requests for {ws.model_name}",
        expect={EVENT_NAME},
        match={"prefect.resource.id": resource_id(ws)},
        parameters={
            "workspace": str(ws.root),
            "envelope": "{{ event.payload }}",
            # Not "{{ event.id }}" alone: Prefect 3.8 fails to render a bare UUID as JSON.
            "delivery_id": "prefect-event:{{ event.id }}",
        },
    )
    return forget_on_deletion_event.to_deployment(
        name=f"{DEPLOYMENT_NAME}-{ws.model_name}",
        parameters={"workspace": str(ws.root)},
        triggers=[trigger],
        interval=sweep_seconds,
        description=f"Forget deletion requests for {ws.model_name} (workspace {ws.root}).",
        tags=["unlearn-ops"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def emit_deletion_request(ws_or_resource: Workspace | str, envelope: Mapping[str, Any]) -> str:
    """Emit `unlearn.deletion.requested` with a signed envelope; the event id.

    A producer in another language posts the same event to `POST /api/events`.
    """
    resource = ws_or_resource if isinstance(ws_or_resource, str) else resource_id(ws_or_resource)
    return events.emit_deletion_request(resource, envelope)


def serve_deployment(deployment: Any) -> None:
    """Serve the deployment until stopped, one run at a time: runs that events queue
    meanwhile are coalesced into the running one."""
    from prefect import serve

    serve(deployment, limit=1, print_starting_message=False)

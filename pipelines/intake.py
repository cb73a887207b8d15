"""Deletion requests from real services: drain the inbox, react to Prefect events, serve.

Three flows share one drain (:func:`drain`):

- `drain-inbox`: forget everything the inbox holds (the S3 listener and the HTTP intake
  put requests there); run by `unlearn-ops listen` after each burst.
- `forget-on-deletion-event`: the flow of the `unlearn-ops serve` deployment, triggered by
  the event `unlearn.deletion.requested` (payload: a signed envelope). It records its own
  request, waits for the coalescing window, records the requests of every other run that
  events queued meanwhile and cancels those runs ("coalesced into ..."), then drains once:
  a burst of requests is one retraining per affected shard.
- the same deployment runs on an interval with no event: a sweep that finishes what a
  crash left behind (claimed requests are picked up again).

A drain holds the workspace lock and strings together library calls of
:mod:`unlearn_ops.deletion.intake` (claim and rebuild the batch, fail what cannot be served, record
what was) around the approval pause and the forget pipeline. Requests arriving while it
runs are drained by the same run before it ends. Requests are recorded with
:func:`unlearn_ops.deletion.intake.receive_envelope`; the listener loop is
:mod:`unlearn_ops.deletion.listener`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from prefect import flow

from pipelines.stages import forget_batch
from unlearn_ops.deletion.intake import (
    approval_markdown,
    approval_summary,
    claim_batch,
    complete_batch,
    fail_requests,
    forget_history,
    receive_envelope,
)
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.errors import ConfigError, UnlearnOpsError
from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "EVENT_NAME",
    "drain",
    "drain_inbox",
    "forget_on_deletion_event",
    "resource_id",
]

EVENT_NAME = "unlearn.deletion.requested"
DEPLOYMENT_NAME = "forget-on-deletion-events"
logger = logging.getLogger("unlearn_ops.deletion.intake")


def resource_id(ws: Workspace) -> str:
    """The Prefect event resource a workspace's deployment listens to."""
    return f"unlearn.workspace.{ws.model_name}"


# ----------------------------------------------------------------------------- the drain
def _approve(ws: Workspace, requests: list[ForgetRequest], timeout: int) -> tuple[bool, str]:
    """Pause the flow run for an approval; (approved, reason)."""
    from prefect.flow_runs import pause_flow_run
    from prefect.input import RunInput

    class Approval(RunInput):
        approve: bool
        reason: str = ""

    plan = ws.ensemble.plan_forget([r for request in requests for r in request.record_ids])
    history = forget_history(ws.registry().versions())
    summary = approval_summary(ws, requests, plan, history)
    logger.warning("waiting for approval: %s", summary)
    answer = pause_flow_run(
        wait_for_input=Approval.with_initial_data(
            description=approval_markdown(summary), approve=False
        ),
        timeout=timeout,
        poll_interval=2,
    )
    return bool(answer.approve), answer.reason


def drain(
    ws: Workspace,
    *,
    run: str | None = None,
    require_approval: bool | None = None,
    before_claim: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Claim and forget every unfinished request in the inbox, batch after batch.

    Args:
        ws: the workspace.
        run: a name for the claim (the flow run id); a fresh one when None.
        require_approval: pause for an approval before retraining (settings by default).
        before_claim: called (no arguments) before each claim, holding the lock: the
            event flow records the requests of queued runs there.

    Returns:
        batches (each the forget pipeline's answer), failed requests with their reasons.
    """
    run = run or f"drain-{uuid.uuid4().hex[:12]}"
    approval = ws.settings.approval_required if require_approval is None else require_approval
    batches: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    with ws.lock():
        while True:
            if before_claim is not None:
                before_claim()
            claimed = claim_batch(ws, run)
            if claimed is None:
                break
            failed.update(claimed.failed)
            batch = claimed.requests
            if not batch:
                continue
            if approval:
                approved, reason = _approve(ws, batch, ws.settings.approval_timeout_seconds)
                if not approved:
                    why = f"rejected by the approver: {reason or 'no reason given'}"
                    refused = dict.fromkeys((r.request_id for r in batch), why)
                    fail_requests(ws, refused)
                    failed.update(refused)
                    continue
            try:
                answer = forget_batch(ws, batch)
            except UnlearnOpsError as exc:
                # Gates failed (the version is registered, not promoted; the ledger says
                # so), or the batch was refused (nothing changed): the requests fail with
                # the reason, and `unlearn-ops inbox --retry` puts them back.
                refused = dict.fromkeys((r.request_id for r in batch), str(exc))
                fail_requests(ws, refused, in_ledger=False)
                failed.update(refused)
                continue
            complete_batch(ws, batch, answer, run)
            batches.append(answer)
    return {"run": run, "batches": batches, "failed": failed, "inbox": ws.inbox.counts()}


@flow(name="drain-inbox")
def drain_inbox(workspace: str, require_approval: bool | None = None) -> dict[str, Any]:
    """Forget every request waiting in the workspace's inbox (one retraining per shard)."""
    from prefect.runtime import flow_run

    ws = Workspace.open(workspace)
    return drain(ws, run=str(flow_run.id or "") or None, require_approval=require_approval)


# ------------------------------------------------------------------------ event-driven
def _queued_runs(deployment_id: str, me: str) -> list[Any]:
    """Runs of the deployment that wait (scheduled or pending), this run excluded."""
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
    with get_client(sync_client=True) as client:
        while True:  # the API pages at 200
            page = client.read_flow_runs(
                deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[uuid.UUID(deployment_id)])
                ),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
                    )
                ),
                limit=200,
                offset=len(runs),
            )
            runs.extend(page)
            if len(page) < 200:
                break
    return [r for r in runs if str(r.id) != me]


def _coalesce_queued(ws: Workspace, deployment_id: str, me: str) -> tuple[int, int]:
    """Record the requests of queued runs in the inbox, then cancel those runs.

    Returns:
        (runs cancelled, requests new to the inbox).
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    coalesced = new = 0
    for queued in _queued_runs(deployment_id, me):
        envelope = queued.parameters.get("envelope")
        if envelope is not None:
            delivery = queued.parameters.get("delivery_id") or f"prefect-run:{queued.id}"
            status = receive_envelope(ws.inbox, envelope, source=delivery, delivery_id=delivery)
            new += status == "new"
        # Its request is durable in the inbox now: the run itself has nothing left to do.
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(
                queued.id, Cancelled(message=f"coalesced into flow run {me}"), force=True
            )
        coalesced += 1
    return coalesced, new


def _pull_events(ws: Workspace, lookback_seconds: float = 3600.0) -> int:
    """Record the requests of recent events from Prefect's event store; how many were new.

    Automations turn events into runs at their own pace (about one a second on two
    cores), while events are stored as they arrive: reading the store takes a whole
    burst into one batch. Events seen before (by id) are skipped.
    """
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import get_client

    now = datetime.now(UTC)
    body = {
        "filter": {
            "occurred": {
                "since": (now - timedelta(seconds=lookback_seconds)).isoformat(),
                "until": (now + timedelta(seconds=60)).isoformat(),
            },
            "event": {"name": [EVENT_NAME]},
            "resource": {"id": [resource_id(ws)]},
        },
        "limit": 50,  # the most a page may hold
    }
    new = 0
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/events/filter", json=body)
        while True:
            response.raise_for_status()
            page = response.json()
            for event in page.get("events", []):
                delivery = f"prefect-event:{event['id']}"  # seen before: a duplicate
                status = receive_envelope(
                    ws.inbox, event.get("payload"), source=delivery, delivery_id=delivery
                )
                new += status == "new"
            token = page.get("next_page")
            if not token:
                break
            response = client.request(
                "GET",
                "/events/filter/next",
                params={"page-token": token.split("page-token=", 1)[-1]},
            )
    return new


@flow(name="forget-on-deletion-event")
def forget_on_deletion_event(
    workspace: str,
    envelope: dict[str, Any] | None = None,
    delivery_id: str | None = None,
    window_seconds: float | None = None,
) -> dict[str, Any]:
    """Record the event's request, wait for the window, coalesce queued runs, drain.

    Args:
        workspace: the workspace directory.
        envelope: the event's payload: a signed request (None for a sweep run).
        delivery_id: `prefect-event:<event id>`: an event delivered twice records once.
        window_seconds: the coalescing window (`UNLEARN_OPS_COALESCE_SECONDS` by default):
            the run waits until no event queued a run for that long (ten windows at most).
    """
    from prefect.runtime import deployment, flow_run

    ws = Workspace.open(workspace)
    me = str(flow_run.id or "")
    started = time.monotonic()
    status = None
    if envelope is not None:
        delivery = delivery_id or f"prefect-run:{me}"
        status = receive_envelope(ws.inbox, envelope, source=delivery, delivery_id=delivery)
    window = ws.settings.coalesce_seconds if window_seconds is None else window_seconds
    deployment_id = str(deployment.id or "")
    coalesced = 0
    settled = False

    def gather() -> None:
        """Coalesce the runs that events queued: the first time, until a window is quiet."""
        nonlocal coalesced, settled
        last_arrival, deadline = started, started + 10 * window
        while True:
            got = 0
            if deployment_id:
                cancelled, new = _coalesce_queued(ws, deployment_id, me)
                coalesced += cancelled
                got = new + _pull_events(ws)
            now = time.monotonic()
            last_arrival = now if got else last_arrival
            if settled or now - last_arrival >= window or now >= deadline:
                break
            time.sleep(min(1.0, window))
        settled = True  # later batches take what queued meanwhile, without waiting

    result = drain(ws, run=me or None, before_claim=gather)
    return {**result, "event": status, "coalesced_runs": coalesced}


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
    from prefect.events import emit_event

    resource = ws_or_resource if isinstance(ws_or_resource, str) else resource_id(ws_or_resource)
    request = envelope.get("request")
    request_id = request.get("request_id") if isinstance(request, Mapping) else None
    event = emit_event(
        event=EVENT_NAME,
        resource={"prefect.resource.id": resource, "unlearn.request_id": str(request_id)},
        payload=dict(envelope),
    )
    if event is None:
        raise ConfigError(
            "Prefect events", ["no event was emitted: is PREFECT_API_URL set to a Prefect server?"]
        )
    return str(event.id)

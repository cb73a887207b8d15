"""Deletion events in Prefect: their name and resource, emitting one, paging the event store.

A producer emits `unlearn.deletion.requested` on the resource ``unlearn.workspace.<model>``
with a signed envelope as its payload (:func:`emit_deletion_request`, or ``POST /api/events``
from any language). :func:`read_events` pages through the events the store holds for a
resource, which is how a run takes a whole burst at once: automations create runs at about
one a second on two cores, while the store holds a burst within a second.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from unlearn_ops.adapters.prefect.api import translated
from unlearn_ops.errors import ConfigError

__all__ = [
    "EVENT_NAME",
    "PAGE_SIZE",
    "emit_deletion_request",
    "flush_events",
    "read_events",
    "resource_id",
]

EVENT_NAME = "unlearn.deletion.requested"
PAGE_SIZE = 50  # the most a page of /events/filter may hold


def resource_id(model_name: str) -> str:
    """The Prefect event resource of a workspace (by its registered model name)."""
    return f"unlearn.workspace.{model_name}"


def read_events(
    resource: str,
    *,
    name: str = EVENT_NAME,
    lookback_seconds: float = 3600.0,
    now: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Every event `name` of `resource` in the event store since `lookback_seconds` ago.

    Yields:
        Events as Prefect's API gives them (``id``, ``payload``, ...), page after page.

    Raises:
        OrchestratorError: the API answered an error or could not be reached.
    """
    from prefect.client.orchestration import get_client

    now = now or datetime.now(UTC)
    body = {
        "filter": {
            "occurred": {
                "since": (now - timedelta(seconds=lookback_seconds)).isoformat(),
                "until": (now + timedelta(seconds=60)).isoformat(),
            },
            "event": {"name": [name]},
            "resource": {"id": [resource]},
        },
        "limit": PAGE_SIZE,
    }
    with translated("reading the event store"), get_client(sync_client=True) as client:
        response = client.request("POST", "/events/filter", json=body)
        while True:
            response.raise_for_status()
            page = response.json()
            yield from page.get("events", [])
            token = page.get("next_page")
            if not token:
                return
            response = client.request(
                "GET",
                "/events/filter/next",
                params={"page-token": token.split("page-token=", 1)[-1]},
            )


def emit_deletion_request(resource: str, envelope: Mapping[str, Any]) -> str:
    """Emit `unlearn.deletion.requested` with a signed envelope; the event id.

    Raises:
        ConfigError: no event was emitted (no Prefect server to send it to).
    """
    from prefect.events import emit_event

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


def flush_events(timeout: float = 30.0) -> None:
    """Send the events this process emitted before it ends (Prefect sends them in a thread)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout)

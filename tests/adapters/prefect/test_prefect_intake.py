"""The Prefect adapter against Prefect's real test server: events paged, queued runs
coalesced and cancelled, every envelope through `receive`, errors translated.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow
from pydantic import SecretStr

from unlearn_ops.adapters.prefect.events import (
    EVENT_NAME,
    PAGE_SIZE,
    read_events,
    resource_id,
)
from unlearn_ops.adapters.prefect.intake import PrefectEventIntake, status_word
from unlearn_ops.adapters.prefect.runs import cancel_run, queued_runs
from unlearn_ops.deletion.envelope import sign_request
from unlearn_ops.deletion.inbox import Inbox
from unlearn_ops.deletion.receive import Accepted, Duplicate, ReceiveCounts, Refused
from unlearn_ops.errors import OrchestratorError
from unlearn_ops.settings import Settings

pytestmark = pytest.mark.servers  # Prefect's test server

KEY = "prefect-adapter-test-key"
SETTINGS = Settings(request_signing_key=SecretStr(KEY), id_hash_key=SecretStr("pa-id-key"))


@flow(name="h2-deletion-probe")
def probe(envelope: dict[str, Any] | None = None, delivery_id: str | None = None) -> None:
    """A flow whose deployment's runs the tests queue (never run: nothing serves it)."""


def envelope(request_id: str, key: str = KEY) -> dict[str, Any]:
    body = {
        "request_id": request_id,
        "record_ids": [f"rec-{request_id}"],
        "reason": "GDPR art. 17",
        "requested_at": "2026-11-20T09:30:00+00:00",
    }
    return sign_request(body, key, signed_at=datetime.now(UTC) - timedelta(seconds=1))


def post_events(api_url: str, resource: str, payloads: list[dict[str, Any]]) -> list[str]:
    """What a producer in any language does: POST /api/events; the event ids."""
    now = datetime.now(UTC)
    events = [
        {
            "id": str(uuid.uuid4()),
            "occurred": (now + timedelta(milliseconds=n)).isoformat(),
            "event": EVENT_NAME,
            "resource": {"prefect.resource.id": resource},
            "payload": payload,
        }
        for n, payload in enumerate(payloads)
    ]
    response = httpx.post(f"{api_url}/events", json=events, timeout=30)
    assert response.status_code == 204, response.text
    return [event["id"] for event in events]


def stored(resource: str, count: int) -> list[dict[str, Any]]:
    """The resource's events, once the store holds `count` of them (it persists in batches)."""
    deadline = time.monotonic() + 90
    while True:
        events = list(read_events(resource))
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "inbox.sqlite", SETTINGS)


@pytest.fixture
def resource() -> str:
    return resource_id(f"model-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def deployment_id(prefect_server: str) -> str:
    return str(probe.to_deployment(name=f"probe-{uuid.uuid4().hex[:8]}").apply())


def queue_run(deployment_id: str, parameters: dict[str, Any]) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(
            uuid.UUID(deployment_id), parameters=parameters
        )
    return str(run.id)


def run_state(run_id: str) -> tuple[str, str | None]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(uuid.UUID(run_id)).state
    assert state is not None
    return state.type.value, state.message


def test_the_event_store_is_read_page_after_page(prefect_server: str, resource: str) -> None:
    count = PAGE_SIZE + 7
    ids = post_events(prefect_server, resource, [{"n": n} for n in range(count)])
    post_events(prefect_server, resource_id("another-model"), [{"n": -1}])
    events = stored(resource, count)
    assert sorted(event["id"] for event in events) == sorted(ids)
    assert sorted(event["payload"]["n"] for event in events) == list(range(count))


def test_the_intake_coalesces_queued_runs_and_reads_events_once(
    prefect_server: str, inbox: Inbox, resource: str, deployment_id: str
) -> None:
    mine = queue_run(deployment_id, {})
    queued = queue_run(
        deployment_id, {"envelope": envelope("dsr-q"), "delivery_id": "prefect-event:q-1"}
    )
    sweep = queue_run(deployment_id, {})  # a sweep run: nothing to record, still cancelled
    [event_id] = post_events(prefect_server, resource, [envelope("dsr-e")])
    post_events(prefect_server, resource, [envelope("dsr-forged", key="another-key")])
    assert len(stored(resource, 2)) == 2
    intake = PrefectEventIntake(inbox, resource, deployment_id=deployment_id, run_id=mine)

    assert intake.poll() == 2  # dsr-q from its queued run, dsr-e from the store
    assert intake.coalesced == 2
    for run in (queued, sweep):
        assert run_state(run) == ("CANCELLED", f"coalesced into flow run {mine}")
    assert run_state(mine)[0] == "SCHEDULED"  # never its own run
    assert sorted(e.request_id for e in inbox.entries()) == ["dsr-e", "dsr-q"]
    assert {e.source for e in inbox.entries()} == {"prefect-event:q-1", f"prefect-event:{event_id}"}
    assert [r.kind for r in inbox.rejections()] == ["forged"]

    # Read again (the next batch): every event is a delivery seen before.
    assert intake.poll() == 0
    assert intake.received == ReceiveCounts(accepted=2, refused=2, duplicates=1)
    assert [r.kind for r in inbox.rejections()] == ["forged"]  # recorded once
    assert inbox.get("dsr-e").deliveries == 1
    # The event that queued the run arrives as its own run's parameter: a duplicate.
    assert intake.receive(envelope("dsr-q"), "prefect-event:q-1") == Duplicate("dsr-q", "pending")


def test_outside_a_deployment_nothing_is_polled(inbox: Inbox, resource: str) -> None:
    intake = PrefectEventIntake(inbox, resource)
    assert intake.poll() == 0
    assert intake.coalesced == 0


def test_status_words_are_those_of_the_flow_result() -> None:
    assert status_word(Accepted("r")) == "new"
    assert status_word(Duplicate("r", "done")) == "duplicate"
    assert status_word(Refused("forged", "no")) == "rejected:forged"


def test_cancelling_a_run_that_does_not_exist_is_an_orchestrator_error(
    prefect_server: str,
) -> None:
    with pytest.raises(OrchestratorError, match="Prefect cancelling a flow run failed") as caught:
        cancel_run(uuid.uuid4(), "coalesced")
    assert caught.value.__cause__ is not None


@pytest.fixture
def unreachable() -> Iterator[None]:
    """Prefect's API on a loopback port that nothing listens on."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        yield


@pytest.mark.usefixtures("unreachable")
def test_an_unreachable_api_is_an_orchestrator_error() -> None:
    with pytest.raises(OrchestratorError, match="Prefect reading the event store failed") as caught:
        list(read_events("unlearn.workspace.x"))
    assert isinstance(caught.value.__cause__, httpx.HTTPError)
    with pytest.raises(OrchestratorError, match="Prefect reading queued flow runs failed"):
        queued_runs(str(uuid.uuid4()))

"""The listener loop: bursts drained once, every intake's outcomes counted, SIGTERM between drains.

A real workspace (made by `unlearn-ops init`), its real inbox and a real HTTP intake on
127.0.0.1; the drain is the loop's own seam (a callable), here one that claims and
completes what waits, as the `drain-inbox` flow does, without training.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from unlearn_ops.adapters.http.intake import INTAKE_PATH, HttpIntake
from unlearn_ops.deletion.envelope import sign_request
from unlearn_ops.deletion.listener import listen
from unlearn_ops.deletion.receive import ReceiveCounts, receive
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from tests.conftest import CliRunner

KEY = "listener-test-signing-key"


@pytest.fixture
def ws(tmp_path: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", KEY)
    code, _, err = cli(["init", str(tmp_path / "ws"), "--shards", "2", "--slices", "2"])
    assert code == 0, err
    return Workspace.open(tmp_path / "ws")


def envelope(request_id: str, records: list[str], key: str = KEY) -> dict[str, Any]:
    body = {
        "request_id": request_id,
        "record_ids": records,
        "reason": "GDPR art. 17",
        "requested_at": "2026-11-20T09:30:00+00:00",
    }
    return sign_request(body, key, signed_at=datetime.now(UTC) - timedelta(seconds=1))


class Drains:
    """A drain that claims every waiting request and completes it (no training)."""

    def __init__(self, ws: Workspace, then: Callable[[], None] | None = None) -> None:
        self.ws = ws
        self.then = then
        self.batches: list[list[str]] = []

    def __call__(self) -> dict[str, Any]:
        claimed = [entry.request_id for entry in self.ws.inbox.claim(f"run-{len(self.batches)}")]
        self.ws.inbox.complete(claimed, {"version": "2"})
        self.batches.append(claimed)
        if self.then is not None:
            self.then()
        return {"batches": [{"requests": claimed}], "failed": {}}


def post(server: HttpIntake, body: object) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}{INTAKE_PATH}", content=data, timeout=30).status_code


def test_with_nothing_waiting_once_drains_nothing(ws: Workspace) -> None:
    drains = Drains(ws)
    report = listen(ws, drain=drains, once=True, window=0)
    assert (report.drains, report.batches, drains.batches) == (0, 0, [])
    assert report.received == ReceiveCounts()


def test_what_waits_is_drained_as_one_batch(ws: Workspace) -> None:
    for n in range(3):
        outcome = receive(ws.inbox, envelope(f"dsr-{n}", [str(n)]), source="test")
        assert type(outcome).__name__ == "Accepted"
    drains = Drains(ws)
    report = listen(ws, drain=drains, once=True, window=0)
    assert drains.batches == [["dsr-0", "dsr-1", "dsr-2"]]
    assert (report.drains, report.batches) == (1, 1)
    assert [e.state for e in ws.inbox.entries()] == ["done"] * 3


def test_the_report_counts_every_http_outcome(ws: Workspace) -> None:
    """Issue 11, finding 5: the summary counted S3 polls only, and said 0 after HTTP."""
    drained: list[dict[str, Any]] = []
    with HttpIntake(ws.inbox, ws.settings) as server:
        assert post(server, envelope("dsr-http", ["7"])) == 202
        assert post(server, envelope("dsr-http", ["7"])) == 200
        assert post(server, envelope("dsr-http", ["7"])) == 200
        assert post(server, {k: v for k, v in envelope("u", ["8"]).items() if k != "signature"})
        assert post(server, envelope("forged", ["9"], key="another-key")) == 401
        assert post(server, b"{not json") == 400
        assert post(server, envelope("dsr-http", ["8"])) == 409
        report = listen(
            ws, http=server, drain=Drains(ws), once=True, window=0, on_drained=drained.append
        )
    assert report.received == ReceiveCounts(accepted=1, duplicates=2, refused=4)
    assert report.to_dict()["received"] == {"accepted": 1, "duplicates": 2, "refused": 4}
    assert (report.drains, report.batches) == (1, 1)
    assert [batch["requests"] for answer in drained for batch in answer["batches"]] == [
        ["dsr-http"]
    ]


def test_an_http_arrival_restarts_the_window(ws: Workspace) -> None:
    """No `arrived` event: what the HTTP intake accepted counts as an arrival by itself."""
    stop = threading.Event()
    with HttpIntake(ws.inbox, ws.settings) as server:
        drains = Drains(ws, then=stop.set)
        assert post(server, envelope("first", ["1"])) == 202
        timer = threading.Timer(0.3, lambda: post(server, envelope("second", ["2"])))
        timer.start()
        report = listen(ws, http=server, drain=drains, window=0.8, wait_seconds=1, stop=stop)
        timer.join()
    # One drain took both: the second arrived inside the first one's window.
    assert drains.batches == [["first", "second"]]
    assert report.received.accepted == 2


def test_a_failed_drain_is_reported_and_its_requests_stay_claimed(ws: Workspace) -> None:
    receive(ws.inbox, envelope("dsr-9", ["9"]), source="test")
    stop = threading.Event()

    def failing() -> dict[str, Any]:
        ws.inbox.claim("doomed")
        stop.set()  # the loop then stops instead of waiting to retry
        raise RuntimeError("the pipeline is down")

    report = listen(ws, drain=failing, window=0, wait_seconds=1, stop=stop)
    assert report.errors == ["drain: RuntimeError: the pipeline is down"]
    assert report.drains == 0
    assert [e.state for e in ws.inbox.entries()] == ["processing"]  # the next drain takes it
    with pytest.raises(RuntimeError, match="the pipeline is down"):
        listen(ws, drain=failing, once=True, window=0)


def test_sigterm_stops_the_loop_after_the_drain_in_progress(ws: Workspace) -> None:
    receive(ws.inbox, envelope("dsr-t", ["3"]), source="test")
    started = threading.Event()
    finished: list[str] = []

    def slow_drain() -> dict[str, Any]:
        started.set()
        # SIGTERM arrives now, in the main thread; this drain still runs to its end.
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(0.3)
        answer = Drains(ws)()
        finished.append("drained")
        return answer

    before = signal.getsignal(signal.SIGTERM)
    report = listen(ws, drain=slow_drain, window=0, wait_seconds=1)
    assert started.is_set()
    assert finished == ["drained"]
    assert (report.drains, report.batches) == (1, 1)
    assert signal.getsignal(signal.SIGTERM) is before  # the old handler is back

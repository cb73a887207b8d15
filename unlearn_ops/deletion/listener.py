"""`unlearn-ops listen`: S3/SQS (and HTTP) intake into the inbox, drained after each burst.

The loop: poll the queue (long poll), record what arrives in the inbox (the SQS message is
deleted only after that), notice what the HTTP intake recorded, and once the burst is
complete (:class:`~unlearn_ops.deletion.coalescing.Burst`), run the drain it was given
(the `drain-inbox` flow): a burst is one retraining per affected shard. Killed at any
point, nothing is lost: an unacknowledged message comes back after its visibility timeout,
and a drain that was cut off is finished by the next one (its claimed requests are picked
up again). Its report counts every intake's outcomes (S3 files and HTTP deliveries).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from unlearn_ops.adapters.aws.report import PollReport
from unlearn_ops.deletion.coalescing import Burst
from unlearn_ops.deletion.receive import ReceiveCounts
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.adapters.aws.s3_intake import S3Intake
    from unlearn_ops.adapters.http.intake import HttpIntake

__all__ = ["ListenReport", "listen"]

logger = logging.getLogger("unlearn_ops.listen")


@dataclass
class ListenReport:
    """What a listener did until it stopped.

    Attributes:
        polls: SQS receives made.
        intake: what those polls did, summed (accepted, duplicates, refused, errors).
        received: every intake's outcomes (S3 files and HTTP deliveries): what the
            closing summary says.
        drains: drains run; batches: retraining runs (or no-op batches) they made.
        failed: requests that failed, with the reason.
        errors: drains that failed (their requests stay claimed for the next one).
    """

    polls: int = 0
    intake: PollReport = field(default_factory=PollReport)
    received: ReceiveCounts = field(default_factory=ReceiveCounts)
    drains: int = 0
    batches: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            **asdict(self),
            "intake": self.intake.to_dict(),
            "received": self.received.to_dict(),
        }


def listen(
    ws: Workspace,
    *,
    s3: S3Intake | None = None,
    http: HttpIntake | None = None,
    arrived: threading.Event | None = None,
    drain: Callable[[], dict[str, Any]],
    once: bool = False,
    wait_seconds: int = 5,
    visibility_timeout: int = 60,
    window: float | None = None,
    stop: threading.Event | None = None,
    on_drained: Callable[[dict[str, Any]], None] | None = None,
) -> ListenReport:
    """Run the intake loop until `stop` is set (or, with `once`, until all is drained).

    Args:
        ws: the workspace whose inbox is fed and drained.
        s3: the S3/SQS intake to poll, if any.
        http: the HTTP intake serving this inbox, if any (started by the caller): what
            it records counts as an arrival, and its outcomes go into the report.
        arrived: set by other intakes when they recorded a request; the loop clears it.
        drain: runs the drain (the `drain-inbox` flow of `pipelines.intake`); returns its
            answer. The loop knows nothing of Prefect.
        once: stop when the queue gave nothing and the inbox is drained (cron, tests).
        wait_seconds: SQS long-poll time.
        visibility_timeout: how long a received message stays hidden (until it is
            deleted, or comes back for another try).
        window: the coalescing window (`UNLEARN_OPS_COALESCE_SECONDS` by default).
        stop: set it (or send SIGTERM/SIGINT from the main thread) to stop after the step
            in progress.
        on_drained: called with each drain's answer.
    """
    window = ws.settings.coalesce_seconds if window is None else window
    stop = stop or threading.Event()
    report = ListenReport()
    burst = Burst(window)
    http_accepted = 0
    try:
        with _stop_on_sigterm(stop):
            while not stop.is_set():
                got = 0
                if s3 is not None:
                    polled = s3.poll(
                        ws.inbox,
                        ws.settings,
                        wait_seconds=0 if once else wait_seconds,
                        visibility_timeout=visibility_timeout,
                    )
                    report.polls += 1
                    report.intake += polled
                    for line in polled.errors:
                        logger.warning("intake error: %s", line)
                    got = polled.messages
                elif not once:
                    stop.wait(min(wait_seconds, max(window, 0.2)))
                if arrived is not None and arrived.is_set():
                    arrived.clear()
                    got += 1
                if http is not None:
                    accepted, http_accepted = http_accepted, http.received.counts().accepted
                    got += http_accepted - accepted
                pending = ws.inbox.counts()
                waiting = pending.get("pending", 0) + pending.get("processing", 0)
                burst.note(got, waiting=bool(waiting))
                if not waiting:
                    if once and not got:
                        break
                    continue
                if burst.due() or (once and not got):
                    try:
                        answer = _in_worker_thread(drain)
                    except Exception as exc:
                        if once:
                            raise
                        # The requests stay claimed; the next drain takes them back.
                        logger.error(
                            "drain failed, retrying later: %s: %s", type(exc).__name__, exc
                        )
                        report.errors.append(f"drain: {type(exc).__name__}: {exc}")
                        stop.wait(max(window, 1.0) * 3)
                        continue
                    report.drains += 1
                    report.batches += len(answer.get("batches", []))
                    report.failed.update(answer.get("failed", {}))
                    burst.drained()
                    if on_drained is not None:
                        on_drained(answer)
                elif once:
                    time.sleep(min(0.2, window))
    finally:
        intake = report.intake
        report.received = ReceiveCounts(intake.accepted, intake.duplicates, intake.rejected)
        if http is not None:
            report.received += http.received.counts()
    return report


def _in_worker_thread(drain: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a drain in a thread: a SIGTERM then stops the loop after it, not in its middle.

    (Prefect's engine turns SIGTERM into an exception inside a flow run in the main thread.)
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["answer"] = drain()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="unlearn-ops-drain")
    worker.start()
    while worker.is_alive():
        worker.join(0.5)
    if "error" in outcome:
        raise outcome["error"]
    answer: dict[str, Any] = outcome["answer"]
    return answer


@contextlib.contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """While inside, SIGTERM sets `stop` (main thread only); the old handler comes back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        logger.warning("signal %s: stopping after the step in progress", signum)
        stop.set()

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""Where training progress goes: a process-wide reporter that the CLI sets for its bars.

Flows run shard tasks in worker threads and cannot take a callback as a parameter (their
parameters are stored by Prefect), so the reporter is set once for the process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from unlearn_ops.sisa.training import StageProgress

__all__ = ["report_stage", "reporting"]

_lock = threading.Lock()
_reporter: StageProgress | None = None


def report_stage(shard_id: int, stage: int, num_stages: int) -> None:
    """Tell the current reporter (if any) that a stage of a shard finished."""
    reporter = _reporter
    if reporter is not None:
        with _lock:
            reporter(shard_id, stage, num_stages)


@contextlib.contextmanager
def reporting(reporter: StageProgress | None) -> Iterator[None]:
    """Send stage progress to `reporter` for the duration."""
    global _reporter
    previous = _reporter
    _reporter = reporter
    try:
        yield
    finally:
        _reporter = previous

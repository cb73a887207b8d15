"""Timing the phases of a flow, for the `unlearn.timings` tag and the benchmark."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

__all__ = ["Stopwatch"]


class Stopwatch:
    """Seconds per named phase, for the `unlearn.timings` tag and the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block under `name` (added up if repeated)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

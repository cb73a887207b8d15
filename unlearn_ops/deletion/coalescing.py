"""When a burst of deletion requests is complete: the one coalescing policy of every drain.

Retraining is paid per affected shard, not per request, so requests that arrive together
are forgotten together. A burst is complete once nothing new arrived for the coalescing
window (`UNLEARN_OPS_COALESCE_SECONDS`), or once the oldest waiting request has waited
:data:`MAX_WINDOWS` windows (a steady trickle must not postpone a drain forever). The
listener (`unlearn-ops listen`) and the event-driven flow (`unlearn-ops serve`) both ask
:class:`Burst`; the flow gathers with :class:`Gatherer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["MAX_WINDOWS", "Burst", "Gatherer"]

MAX_WINDOWS = 5.0


class Burst:
    """The arrivals of one burst, and whether it is complete.

    Args:
        window: seconds without a new request that end a burst.
        max_windows: a burst also ends once its oldest request waited this many windows.
        clock: seconds, monotonic (injected by tests).
    """

    def __init__(
        self,
        window: float,
        *,
        max_windows: float = MAX_WINDOWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.max_windows = max_windows
        self.clock = clock
        self._last_arrival: float | None = None
        self._first_waiting: float | None = None

    def __repr__(self) -> str:
        return f"Burst(window={self.window}, max_windows={self.max_windows})"

    def note(self, arrivals: int, *, waiting: bool, now: float | None = None) -> None:
        """What a look at the intakes found.

        Args:
            arrivals: new requests seen since the last look.
            waiting: whether requests wait to be drained (in the inbox).
            now: the time of the look (the clock's by default).
        """
        now = self.clock() if now is None else now
        if arrivals:
            self._last_arrival = now
        if not waiting:
            self._first_waiting = None
        elif self._first_waiting is None:
            self._first_waiting = now

    def due(self, now: float | None = None) -> bool:
        """Requests wait, and nothing arrived for a window or the oldest waited too long."""
        if self._first_waiting is None:
            return False
        now = self.clock() if now is None else now
        quiet = self._last_arrival is None or now - self._last_arrival >= self.window
        overdue = now - self._first_waiting >= self.max_windows * self.window
        return quiet or overdue

    def drained(self) -> None:
        """A drain took what waited: the next request starts a new burst."""
        self._first_waiting = None


class Gatherer:
    """Gather a burst before a drain claims it: the `before_claim` hook of a drain.

    The first call polls until the burst that started at `started` is complete; later
    calls (before the drain's next batches) poll once, without waiting.

    Args:
        poll: records what the intakes hold now; returns how many requests were new.
        window: the coalescing window.
        started: when the burst started (a run's own request arrived), on `clock`.
        sleep: how to wait between polls (injected by tests).
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        poll: Callable[[], int],
        window: float,
        *,
        started: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.poll = poll
        self.burst = Burst(window, clock=clock)
        self.burst.note(1, waiting=True, now=clock() if started is None else started)
        self.sleep = sleep
        self.settled = False
        self.polls = 0

    def __call__(self) -> None:
        """Poll until the burst is complete (the first time), or once."""
        while True:
            arrivals = self.poll()
            self.polls += 1
            self.burst.note(arrivals, waiting=True)
            if self.settled or self.burst.due():
                break
            self.sleep(min(1.0, self.burst.window))
        self.settled = True  # later batches take what queued meanwhile, without waiting

"""The coalescing policy: when a burst is complete (a fake clock: nothing sleeps)."""

from __future__ import annotations

from unlearn_ops.deletion.coalescing import MAX_WINDOWS, Burst, Gatherer


class Clock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_nothing_waiting_is_never_due() -> None:
    clock = Clock()
    burst = Burst(2.0, clock=clock)
    assert not burst.due()
    burst.note(3, waiting=False)
    clock.now += 60
    assert not burst.due()


def test_a_burst_is_due_after_a_quiet_window() -> None:
    clock = Clock()
    burst = Burst(2.0, clock=clock)
    burst.note(1, waiting=True)
    clock.now += 1.9
    assert not burst.due()
    burst.note(0, waiting=True)
    clock.now += 0.1
    assert burst.due()


def test_each_arrival_restarts_the_window_until_the_oldest_waited_too_long() -> None:
    clock = Clock()
    burst = Burst(2.0, clock=clock)
    burst.note(1, waiting=True)
    while clock.now < 100.0 + MAX_WINDOWS * 2.0 - 1.0:
        clock.now += 1.0
        burst.note(1, waiting=True)  # a steady trickle: never a quiet window
        assert not burst.due()
    clock.now += 1.0
    burst.note(1, waiting=True)
    assert burst.due()  # overdue: the trickle does not postpone the drain forever
    burst.drained()
    assert not burst.due()
    burst.note(0, waiting=True)  # what is left starts a new burst, quiet since its last
    assert not burst.due()
    clock.now += 2.0
    assert burst.due()


def test_a_zero_window_is_due_at_once() -> None:
    burst = Burst(0.0, clock=Clock())
    burst.note(5, waiting=True)
    assert burst.due()


def test_the_gatherer_waits_for_the_burst_once_then_polls_once() -> None:
    clock = Clock()
    arrivals = iter([2, 1, 0, 0, 0, 0, 0, 4, 0])
    seen: list[float] = []

    def poll() -> int:
        seen.append(clock.now)
        return next(arrivals)

    gather = Gatherer(poll, 2.0, started=clock.now, sleep=clock.sleep, clock=clock)
    gather()
    # Polls a second apart until two quiet seconds followed the last arrival (at 101).
    assert seen == [100.0, 101.0, 102.0, 103.0]
    assert gather.settled
    gather()  # before a later batch: one poll, no waiting, whatever it finds
    gather()
    assert seen == [100.0, 101.0, 102.0, 103.0, 103.0, 103.0]
    assert gather.polls == 6

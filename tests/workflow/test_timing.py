"""The stopwatch of a flow's phases."""

from __future__ import annotations

import time

import pytest

from unlearn_ops.workflow.timing import Stopwatch


def test_phases_are_timed_and_repeated_phases_add_up() -> None:
    watch = Stopwatch()
    with watch.phase("data"):
        time.sleep(0.02)
    with watch.phase("gates"):
        pass
    first = watch.seconds["data"]
    with watch.phase("data"):
        time.sleep(0.02)
    assert list(watch.seconds) == ["data", "gates"]
    assert first >= 0.02
    assert watch.seconds["data"] >= first + 0.02
    assert 0.0 <= watch.seconds["gates"] < first


def test_a_phase_that_raises_is_still_timed() -> None:
    watch = Stopwatch()
    with pytest.raises(RuntimeError), watch.phase("retraining"):
        raise RuntimeError("crash")
    assert watch.seconds["retraining"] >= 0.0

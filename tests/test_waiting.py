"""wait_until against real time and a real file written by another thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from unlearn_ops.waiting import wait_until


def test_true_at_once_returns_without_sleeping() -> None:
    began = time.monotonic()
    assert wait_until(lambda: True, timeout=10.0, interval=5.0) is True
    assert time.monotonic() - began < 1.0


def test_sees_a_file_another_thread_writes(tmp_path: Path) -> None:
    target = tmp_path / "ready"
    timer = threading.Timer(0.2, target.write_text, args=("yes",))
    timer.start()
    try:
        assert wait_until(target.exists, timeout=10.0, interval=0.02) is True
    finally:
        timer.cancel()
    assert target.read_text() == "yes"


def test_gives_up_after_the_timeout_and_checks_once_more_at_the_deadline() -> None:
    calls: list[float] = []

    def never() -> bool:
        calls.append(time.monotonic())
        return False

    began = time.monotonic()
    assert wait_until(never, timeout=0.3, interval=0.1) is False
    waited = time.monotonic() - began
    assert 0.3 <= waited < 2.0
    assert 3 <= len(calls) <= 6
    assert calls[-1] - began >= 0.3


def test_a_zero_timeout_checks_exactly_once() -> None:
    calls: list[int] = []
    assert wait_until(lambda: calls.append(1), timeout=0) is False
    assert calls == [1]


def test_an_exception_from_the_predicate_ends_the_wait() -> None:
    def exploded() -> bool:
        raise ProcessLookupError("the server exited")

    with pytest.raises(ProcessLookupError, match="server exited"):
        wait_until(exploded, timeout=10.0)

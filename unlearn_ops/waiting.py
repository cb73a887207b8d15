"""Waiting for a condition: poll a predicate until it holds or a deadline passes.

Example::

    from unlearn_ops.waiting import wait_until

    if not wait_until(lambda: path.exists(), timeout=5.0, interval=0.05):
        raise TimeoutError(f"{path} did not appear")
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> bool:
    """Call `predicate` every `interval` seconds until it returns a true value.

    The predicate is always called at least once, and once more at the deadline, so a
    condition that becomes true while the last interval sleeps is still seen. An exception
    from the predicate ends the wait and propagates (a way to give up early, such as when a
    server being waited for has exited).

    Args:
        predicate: the condition; called without arguments.
        timeout: seconds to wait at most (0 or less: check once).
        interval: seconds between calls.

    Returns:
        True when the predicate held; False when the time ran out first.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))

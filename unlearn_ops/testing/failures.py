"""Failure injection: a port that raises at a named call, the other calls passed through.

A crash test wraps the port a workspace uses (the real adapter or a fake) and asserts
what a failure at exactly that call leaves behind; nothing is patched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["InjectedCrashError", "fail_at"]

PortT = TypeVar("PortT")


class InjectedCrashError(RuntimeError):
    """The failure :func:`fail_at` raises unless given another: a crash, not a refusal."""


class _Failing:
    """Delegates every attribute to `port`; `method` raises after `calls_before` calls."""

    def __init__(self, port: Any, method: str, error: BaseException, calls_before: int) -> None:
        if not callable(getattr(port, method, None)):
            raise AttributeError(f"{type(port).__name__} has no method {method!r}")
        self._port = port
        self._method = method
        self._error = error
        self._calls_before = calls_before
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._port, name)
        if name != self._method:
            return attribute
        return self._wrap(attribute)

    def _wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def failing(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls > self._calls_before:
                raise self._error
            return function(*args, **kwargs)

        return failing


def fail_at(
    port: PortT,
    method: str,
    error: BaseException | None = None,
    *,
    calls_before: int = 0,
) -> PortT:
    """`port`, except that its `method` raises `error` once `calls_before` calls succeeded.

    Args:
        port: a registry or lineage (real or fake).
        method: the method that fails, e.g. `"log_version"` or `"record_revision"`.
        error: what it raises (an :class:`InjectedCrashError` naming the method by default).
        calls_before: how many calls succeed first (0: the first call fails).

    Raises:
        AttributeError: `port` has no such method (a typo would make a test that cannot
            fail).

    Example:
        >>> from unlearn_ops.testing import InMemoryRegistry
        >>> registry = fail_at(InMemoryRegistry(), "set_alias")
        >>> registry.versions()
        []
    """
    failure = error or InjectedCrashError(f"injected failure at {method}")
    return cast(PortT, _Failing(port, method, failure, calls_before))

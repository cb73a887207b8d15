"""Prefect's API errors, translated at the boundary into :class:`OrchestratorError`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from unlearn_ops.errors import OrchestratorError

__all__ = ["translated"]


@contextlib.contextmanager
def translated(operation: str) -> Iterator[None]:
    """Inside, httpx and Prefect errors become :class:`OrchestratorError` (``from`` them).

    Args:
        operation: what was being done, for the message ("reading the event store").
    """
    import httpx
    from prefect.exceptions import PrefectException

    try:
        yield
    except (httpx.HTTPError, PrefectException) as exc:
        raise OrchestratorError(operation, f"{type(exc).__name__}: {exc}") from exc

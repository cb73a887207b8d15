"""Prefect's console kept to what matters while a command runs a flow.

An `UnlearnOpsError` raised inside a flow reaches the CLI's `main`, which prints it as one
line; Prefect would also print it to the console, with a traceback, once per task and flow
run that it ended. Those console records are dropped (the runs still end Failed, with the
error, in Prefect's API and UI). Anything else keeps its full log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from unlearn_ops.errors import UnlearnOpsError

__all__ = ["ExpectedErrorFilter", "quiet_expected_errors"]


def _run_id(record: logging.LogRecord) -> str | None:
    """The task run, else the flow run, that a Prefect run logger's record belongs to."""
    run_id = getattr(record, "task_run_id", None) or getattr(record, "flow_run_id", None)
    return None if run_id is None else str(run_id)


class ExpectedErrorFilter(logging.Filter):
    """Drops the console records of the runs that an `UnlearnOpsError` ended.

    Prefect logs a failing run's exception with its traceback (the record carries the
    exception), then closes the run with "Finished in state Failed(...)" (a record without
    it). The first record names the run (`task_run_id`, `flow_run_id`, which Prefect's run
    loggers attach to every record), so the filter drops it and every later record of
    that run; records of other runs, and other exceptions, pass.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ended: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record of a run that an expected error ended."""
        run_id = _run_id(record)
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, UnlearnOpsError):
            if run_id is not None:
                self._ended.add(run_id)
            return False
        return run_id is None or run_id not in self._ended


@contextmanager
def quiet_expected_errors() -> Iterator[None]:
    """Within the block, Prefect's console handlers drop the records of expected errors."""
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = {
        handler
        for logger in (logging.getLogger(), logging.getLogger("prefect"))
        for handler in logger.handlers
        if isinstance(handler, PrefectConsoleHandler)
    }
    quiet = ExpectedErrorFilter()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)

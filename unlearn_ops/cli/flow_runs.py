"""Running the flows from a command: Prefect's defaults, and its console kept to what matters.

An `UnlearnOpsError` raised inside a flow reaches `main`, which prints it as one line;
Prefect would also print it to the console, with a traceback, once per task and flow run
that it ended. Those console records are dropped here (the runs still end Failed, with
the error, in Prefect's API and UI). Anything else keeps its full log.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from unlearn_ops.errors import UnlearnOpsError

__all__ = ["ExpectedErrorFilter", "prefect_defaults", "run_flow"]


def prefect_defaults() -> None:
    """Quiet, patient defaults for Prefect's ephemeral server (STACK.md); env wins."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


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


def run_flow(flow: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a flow with the settings' parallelism; expected errors are left to `main`."""
    from prefect.logging.handlers import PrefectConsoleHandler

    from pipelines.runner import run_flow as run_with_settings

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
        return run_with_settings(flow, *args, **kwargs)
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)

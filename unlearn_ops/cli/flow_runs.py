"""Running the flows from a command: Prefect's defaults, and its console kept to what matters
(:mod:`unlearn_ops.adapters.prefect.console`)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["prefect_defaults", "run_flow"]


def prefect_defaults() -> None:
    """Quiet, patient defaults for Prefect's ephemeral server (STACK.md); env wins."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Dask's scheduler and nannies log every worker's start and stop (issue 15's runner).
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")


def run_flow(flow: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a flow with the settings' parallelism; expected errors are left to `main`."""
    from pipelines.runner import run_flow as run_with_settings
    from unlearn_ops.adapters.prefect.console import quiet_expected_errors

    with quiet_expected_errors():
        return run_with_settings(flow, *args, **kwargs)

"""Running the flows from a command: Prefect's defaults, and its console kept to what matters
(:mod:`unlearn_ops.adapters.prefect.console`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "prefect_defaults",
    "refresh_prefect_settings",
    "run_flow",
    "serve_or_run_once",
    "use_workspace_server",
]

# True in a warm runner's command (:mod:`unlearn_ops.cli.warm`): Prefect was imported before
# the command's environment was set, and its settings are read again from it.
refresh_prefect_settings = False


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


def serve_or_run_once(
    name: str,
    root: Path,
    *,
    serve: Callable[[float], None] | None,
    interval_hours: float,
    run_once: Callable[[], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
    as_json: bool,
) -> None:
    """The exact follow-up of provisional versions (`retrain-exact`, `federation
    remove-exactly`): served as a deployment every `interval_hours` (`serve` given the
    interval in seconds) until stopped, or run once and its result printed."""
    import typer

    from unlearn_ops.cli.output import emit

    if serve is not None:
        typer.echo(f"serving {name} for {root} every {interval_hours} h; Ctrl-C stops")
        serve(interval_hours * 3600)
        return
    result = run_once()
    emit(
        as_json,
        result,
        lambda: typer.echo(result["message"] if result.get("noop") else describe(result)),
    )


def use_workspace_server(root: Path) -> None:
    """Point Prefect at the workspace's local server, starting it once (issue 15).

    Call it before anything imports Prefect, which reads `PREFECT_API_URL` once (a warm
    runner's command, which imported it ahead, has Prefect read its settings again). Left
    as it is: a `PREFECT_API_URL` the user set, `UNLEARN_OPS_PREFECT_SERVER=ephemeral`, and
    a process that imported Prefect already (a test harness, an application embedding us).
    """
    import typer

    from unlearn_ops.adapters.prefect.server import ensure_server, reload_prefect_settings
    from unlearn_ops.settings import load_settings

    if os.environ.get("PREFECT_API_URL"):
        return
    if "prefect" in sys.modules and not refresh_prefect_settings:
        return
    if load_settings().prefect_server != "local":
        return
    server, started = ensure_server(root)
    if started:
        typer.echo(
            f"started a Prefect server for this workspace at {server.ui_url} (pid {server.pid}); "
            "later commands reuse it; `unlearn-ops server stop` stops it",
            err=True,
        )
    os.environ["PREFECT_API_URL"] = server.api_url
    if refresh_prefect_settings:
        reload_prefect_settings()

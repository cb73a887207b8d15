"""`unlearn-ops server`: the workspace's local Prefect server (start, status, stop).

`train`, `forget` and `rollback` start it on first use when `PREFECT_API_URL` is unset
(:mod:`unlearn_ops.adapters.prefect.server`); these commands show and stop it, and the
workspace's warm runner with it (:mod:`unlearn_ops.cli.warm`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from unlearn_ops.cli.options import JsonOption, WorkspaceOption, command_group
from unlearn_ops.cli.output import emit, open_workspace

__all__ = ["app"]

app = command_group("The workspace's local Prefect server (flows reuse it).")


def _view(server: object | None) -> dict[str, object]:
    from unlearn_ops.adapters.prefect.server import LocalServer

    if not isinstance(server, LocalServer):
        return {"running": False}
    return {"running": True, "pid": server.pid, "url": server.ui_url, "api_url": server.api_url}


@app.command()
def start(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """Start the server now (flows start it on first use anyway)."""
    from unlearn_ops.adapters.prefect.server import ensure_server

    ws = open_workspace(workspace)
    server, started = ensure_server(ws.root)
    view = {**_view(server), "started": started}
    emit(
        as_json,
        view,
        lambda: typer.echo(
            f"{'started' if started else 'already running'}: {server.ui_url} (pid {server.pid})"
        ),
    )


@app.command()
def status(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """Whether the server runs, and where."""
    from unlearn_ops.adapters.prefect.server import running_server
    from unlearn_ops.cli.warm import running_runner

    ws = open_workspace(workspace)
    runner = running_runner(ws.root)
    view = {**_view(running_server(ws.root)), "warm_runner_pid": runner and runner.pid}

    def lines() -> None:
        typer.echo(
            f"running: {view['url']} (pid {view['pid']})" if view["running"] else "not running"
        )
        if runner is not None:
            typer.echo(f"warm runner: pid {runner.pid}")

    emit(as_json, view, lines)


@app.command()
def stop(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """Stop the server (its whole process group) and the workspace's warm runner."""
    from unlearn_ops.adapters.prefect.server import stop_server
    from unlearn_ops.cli.warm import stop_runner

    ws = open_workspace(workspace)
    runner = stop_runner(ws.root)
    stopped = stop_server(ws.root)
    view = {
        "stopped": stopped is not None,
        **({"pid": stopped.pid} if stopped else {}),
        "warm_runner_stopped": runner is not None,
    }

    def lines() -> None:
        typer.echo(
            f"stopped the server (pid {stopped.pid})" if stopped else "no server was running"
        )
        if runner is not None:
            typer.echo(f"stopped the warm runner (pid {runner.pid})")

    emit(as_json, view, lines)

"""The `unlearn-ops` application: its commands, and `main`, which turns every error into one line.

Heavy libraries (torch, pandas, mlflow, prefect) load inside the commands, so
`unlearn-ops --help` is fast. Every command works from inside a workspace (or below it)
or with `--workspace DIR`, and takes `--json`. The commands live by group:

- :mod:`~unlearn_ops.cli.workspace`: init, train, forget, rollback, demo;
- :mod:`~unlearn_ops.cli.stages`: the DVC stages prepare, train-shard, evaluate, register;
- :mod:`~unlearn_ops.cli.versions`: versions, show, verify, ui;
- :mod:`~unlearn_ops.cli.compliance`: audit, report, purge;
- :mod:`~unlearn_ops.cli.receipt`: receipt;
- :mod:`~unlearn_ops.cli.intake`: sign, submit, inbox, listen, serve;
- :mod:`~unlearn_ops.cli.holds`: hold add, hold list, hold release;
- :mod:`~unlearn_ops.cli.approx`: adopt, retrain-exact (monolithic workspaces);
- :mod:`~unlearn_ops.cli.server`: server start, status, stop (the local Prefect server);
- :mod:`~unlearn_ops.cli.federated`: federation init, train, remove, certify;
- :mod:`~unlearn_ops.cli.bench`: bench, bench-data.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

import typer

from unlearn_ops.cli import (
    approx,
    bench,
    compliance,
    federated,
    holds,
    intake,
    privacy,
    receipt,
    server,
    stages,
    versions,
    workspace,
)
from unlearn_ops.cli.flow_runs import prefect_defaults
from unlearn_ops.errors import UnlearnOpsError

__all__ = ["app", "main"]

app = typer.Typer(
    name="unlearn-ops",
    help="Make trained models forget records exactly (SISA), with provenance in MLflow and DVC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# In the order `--help` lists them; a name where it is not the function's.
COMMANDS: list[tuple[str | None, Callable[..., None]]] = [
    (None, workspace.init),
    (None, workspace.train),
    (None, stages.prepare),
    ("train-shard", stages.train_shard_command),
    (None, stages.evaluate),
    (None, stages.register),
    (None, workspace.forget),
    (None, versions.versions),
    (None, versions.show),
    (None, versions.verify),
    (None, privacy.audit_privacy),
    (None, workspace.demo),
    (None, versions.ui),
    (None, compliance.audit),
    (None, compliance.report),
    (None, workspace.rollback),
    (None, compliance.purge),
    (None, receipt.receipt),
    (None, bench.bench),
    (None, intake.sign),
    (None, intake.submit),
    (None, intake.inbox),
    (None, intake.listen),
    (None, intake.serve),
    (None, approx.adopt),  # monolithic workspaces (issue 14)
    ("retrain-exact", approx.retrain_exact),
]
for name, command in COMMANDS:
    app.command(name)(command)
app.add_typer(holds.app, name="hold")
app.add_typer(federated.app, name="federation")
app.add_typer(bench.data_app, name="bench-data")
app.add_typer(server.app, name="server")


def _from_each_click(name: str) -> tuple[type[Exception], ...]:
    """The exception class `name` of each copy of click that typer may raise from.

    typer 0.29 carries its own click (`typer._click`), whose errors are not the `click`
    package's (issue 11, finding 6); older typers raise the `click` package's.
    """
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _usage_line(error: Exception) -> str:
    """A click error in one line: what was wrong (with click's suggestions), where to look."""
    message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
    if not message.endswith((".", "?", "!")):
        message += "."
    context = getattr(error, "ctx", None)
    where = f" See '{context.command_path} --help'." if context is not None else ""
    return f"error: {message}{where}"


def _workspace_option(argv: list[str]) -> str | None:
    """The `--workspace` of the command line `argv` if it parses; None if it does not.

    Parses as `app` would (options, types, the `UNLEARN_OPS_WORKSPACE` variable, defaults)
    without running the command, so a mistyped command starts nothing (no warm runner).
    """
    group = typer.main.get_command(app)
    command = group.commands.get(argv[0]) if argv else None  # type: ignore[attr-defined]
    if command is None:
        return None
    parent = group.context_class(group, info_name=app.info.name)
    refused = _from_each_click("ClickException") + _from_each_click("Exit")
    try:
        with command.make_context(argv[0], list(argv[1:]), parent=parent) as context:
            workspace = context.params.get("workspace")
    except refused:
        return None
    return None if workspace is None else str(workspace)


def main(argv: list[str] | None = None, *, delegate_to_runner: bool = True) -> None:
    """Entry point: run the app; library and usage errors become one line and exit code 2.

    Commands that run flows go to the workspace's warm runner (:mod:`unlearn_ops.cli.warm`)
    unless `delegate_to_runner` is false (the runner's own children pass false).
    """
    if delegate_to_runner:
        from unlearn_ops.cli.warm import delegate

        status = delegate(sys.argv[1:] if argv is None else list(argv), _workspace_option)
        if status is not None:
            sys.exit(status)
    prefect_defaults()  # before anything imports Prefect, which reads them once
    click_errors = _from_each_click("ClickException")
    try:
        result = app(args=argv, standalone_mode=False)
    except UnlearnOpsError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except click_errors as exc:
        if isinstance(exc, _from_each_click("NoArgsIsHelpError")):
            exc.show()  # type: ignore[attr-defined]
        else:
            typer.echo(_usage_line(exc), err=True)
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    if isinstance(result, int) and result:
        sys.exit(result)


if __name__ == "__main__":
    main()

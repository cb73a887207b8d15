"""Options that many commands share, how a path the user typed is read, and command groups.

Every path option is resolved against the current directory when the command line is
parsed (`resolve_path=True`), before anything runs: later steps may run inside the
workspace (DVC works from there), and a relative path must mean what it meant where the
user typed it (issue 11, finding 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = [
    "IntervalHoursOption",
    "JsonOption",
    "ProgressOption",
    "ServeOption",
    "WorkspaceOption",
    "command_group",
    "output_option",
    "request_argument",
]

WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace directory; by default the one containing the current directory.",
        envvar="UNLEARN_OPS_WORKSPACE",
        resolve_path=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
ProgressOption = Annotated[bool, typer.Option(help="Show a bar per shard while training.")]
# The exact follow-up of provisional versions (`retrain-exact`, `federation remove-exactly`),
# served as a Prefect deployment on an interval instead of run once.
ServeOption = Annotated[
    bool, typer.Option("--serve", help="Serve the flow as a deployment on an interval instead.")
]
IntervalHoursOption = Annotated[
    float, typer.Option(min=0.01, help="With --serve: hours between runs.")
]


def request_argument(help_text: str) -> Any:
    """The REQUEST_ID argument of a command about one request (an id in the ledger)."""
    return typer.Argument(metavar="REQUEST_ID", help=help_text)


def output_option(help_text: str) -> Any:
    """`--output/-o FILE`: the file a command writes, resolved where the user typed it."""
    return typer.Option("--output", "-o", help=help_text, resolve_path=True)


def command_group(help_text: str) -> typer.Typer:
    """A group of sub-commands (`hold`, `server`, ...): called bare, it lists them.

    Args:
        help_text: the group's line in `unlearn-ops --help` and the head of its own help.
    """
    return typer.Typer(help=help_text, no_args_is_help=True)

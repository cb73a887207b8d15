"""The `federation` commands: train a Flower federation's client groups, remove a client.

Both drive a running deployment (a SuperLink and its SuperNodes, e.g. `python
infra/flower.py up`) through the Flower environment's `flwr` (`make flower`), and register
the served model in the workspace's registry (:mod:`unlearn_ops.workflow.federated`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from unlearn_ops.cli.flow_runs import run_flow
from unlearn_ops.cli.options import JsonOption, WorkspaceOption, command_group
from unlearn_ops.cli.output import emit, open_workspace

__all__ = ["app"]

app = command_group("A Flower federation: train its client groups, remove a client (issue 13).")

HomeOption = Annotated[
    Path,
    typer.Option(help="The deployment's FLWR_HOME (its config.toml names the SuperLink)."),
]
BinOption = Annotated[
    Path,
    typer.Option(help="The Flower environment's bin folder (`make flower`)."),
]
DEFAULT_BIN = Path(".venv-flower/bin")


@app.command("train")
def train(
    flower_home: HomeOption,
    run_name: Annotated[str, typer.Option(help="The run's folder name (new).")],
    flower_bin: BinOption = DEFAULT_BIN,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Train every client group on the deployment; the served model becomes champion."""
    from pipelines.federated import federated_train

    ws = open_workspace(workspace)
    version = run_flow(
        federated_train,
        str(ws.root),
        str(flower_home.resolve()),
        str(flower_bin.resolve()),
        run_name,
    )
    emit(as_json, {"version": version}, lambda: typer.echo(f"version {version} is champion"))


@app.command("remove")
def remove(
    request: Annotated[Path, typer.Option(help="The signed request naming a `client_id`.")],
    flower_home: HomeOption,
    flower_bin: BinOption = DEFAULT_BIN,
    reason: Annotated[
        str, typer.Option(help="`withdrawal` (consent) or `poisoning` (expelled).")
    ] = "withdrawal",
    method: Annotated[
        str,
        typer.Option(help="`exact` (retrain its group) or `federaser` (approximate, provisional)."),
    ] = "exact",
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Remove the client a signed request names from its group (exact, or FedEraser)."""
    import json

    from pipelines.federated import remove_client
    from unlearn_ops.errors import InvalidRequestError

    if reason not in ("withdrawal", "poisoning"):
        raise InvalidRequestError(f"--reason {reason!r}", "give withdrawal or poisoning")
    if method not in ("exact", "federaser"):
        raise InvalidRequestError(f"--method {method!r}", "give exact or federaser")
    chosen: Literal["withdrawal", "poisoning"] = (
        "withdrawal" if reason == "withdrawal" else "poisoning"
    )
    how: Literal["exact", "federaser"] = "exact" if method == "exact" else "federaser"
    ws = open_workspace(workspace)
    envelope = json.loads(request.read_text(encoding="utf-8"))
    version = run_flow(
        remove_client,
        str(ws.root),
        envelope,
        str(flower_home.resolve()),
        str(flower_bin.resolve()),
        chosen,
        how,
    )
    emit(
        as_json,
        {"version": version, "reason": chosen, "method": how},
        lambda: typer.echo(f"client removed ({chosen}, {how}); version {version} is champion"),
    )

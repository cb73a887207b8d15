"""The `federation` commands: train a Flower federation's groups, remove a client, certify.

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
from unlearn_ops.cli.output import emit, int_list, open_workspace

__all__ = ["app"]

app = command_group(
    "A Flower federation: train its client groups, remove a client, certify a removal (issue 13)."
)

HomeOption = Annotated[
    Path,
    typer.Option(help="The deployment's FLWR_HOME (its config.toml names the SuperLink)."),
]
BinOption = Annotated[
    Path,
    typer.Option(help="The Flower environment's bin folder (`make flower`)."),
]
DEFAULT_BIN = Path(".venv-flower/bin")


def _deployment(flower_home: Path, flower_bin: Path) -> tuple[str, str]:
    """The flows' `flower_home` and `flower_bin` arguments: absolute paths."""
    return str(flower_home.resolve()), str(flower_bin.resolve())


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
        *_deployment(flower_home, flower_bin),
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
        *_deployment(flower_home, flower_bin),
        chosen,
        how,
    )
    emit(
        as_json,
        {"version": version, "reason": chosen, "method": how},
        lambda: typer.echo(f"client removed ({chosen}, {how}); version {version} is champion"),
    )


@app.command("certify")
def certify(
    version: Annotated[str, typer.Argument(help="A federated version, or an alias.")],
    flower_home: HomeOption,
    groups: Annotated[
        str | None,
        typer.Option(help="Comma-separated group ids; by default the groups it retrained."),
    ] = None,
    flower_bin: BinOption = DEFAULT_BIN,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Exactness certificate: federate the version's groups afresh and compare bit for bit."""
    from pipelines.federated import certify_federated

    chosen = int_list(groups, "--groups")
    ws = open_workspace(workspace)
    certificate = run_flow(
        certify_federated,
        str(ws.root),
        version,
        *_deployment(flower_home, flower_bin),
        chosen,
    )

    def lines() -> None:
        for group in certificate.groups:
            typer.echo(
                f"group {group.group}: {'exact' if group.exact else 'DIFFERS'} "
                f"({group.clients} clients, weights {group.served_hash[:12]} vs fresh "
                f"federation {group.scratch_hash[:12] or '-'})"
            )
        verdict = "PASSED" if certificate.passed else "FAILED"
        typer.echo(
            f"exactness certificate for federated version {certificate.version} {verdict} "
            f"in {certificate.seconds:.1f} s (run {certificate.run})"
        )

    emit(as_json, certificate.to_dict(), lines)
    if not certificate.passed:
        raise typer.Exit(1)

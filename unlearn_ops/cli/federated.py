"""The `federation` commands: set a Flower federation up, train its groups, remove a client,
certify a removal.

`init` reads files only; the others drive a running deployment (a SuperLink and its
SuperNodes, e.g. `python infra/flower.py up`) through the Flower environment's `flwr`
(`make flower`), and register the served model in the workspace's registry
(:mod:`unlearn_ops.workflow.federated`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from unlearn_ops.cli.flow_runs import run_flow, serve_or_run_once
from unlearn_ops.cli.options import (
    IntervalHoursOption,
    JsonOption,
    ServeOption,
    WorkspaceOption,
    command_group,
)
from unlearn_ops.cli.output import emit, int_list, open_workspace

if TYPE_CHECKING:
    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["app"]

app = command_group(
    "A Flower federation: set it up, train its client groups, remove a client, certify a "
    "removal (issue 13)."
)

HomeOption = Annotated[
    Path,
    typer.Option(help="The deployment's FLWR_HOME (its config.toml names the SuperLink)."),
]
BinOption = Annotated[
    Path | None,
    typer.Option(
        help="The Flower environment's bin folder; UNLEARN_OPS_FLOWER_BIN, else the "
        "`.venv-flower/bin` that `make flower` builds beside unlearn-ops's own environment."
    ),
]


def _deployment(ws: Workspace, flower_home: Path, flower_bin: Path | None) -> tuple[str, str]:
    """The flows' `flower_home` and `flower_bin` arguments: absolute paths."""
    executables = flower_bin.resolve() if flower_bin else ws.settings.flower_executables()
    return str(flower_home.resolve()), str(executables)


@app.command("init")
def init(
    sites: Annotated[
        Path,
        typer.Option(
            help='The sites file that starts the deployment: a JSON list of {"partition_id", '
            '"client_id", "data_path"} (only keyed hashes of the ids are kept).'
        ),
    ],
    holdout: Annotated[
        Path, typer.Option(help="The server's held-out table (CSV or parquet): `label` + features.")
    ],
    config: Annotated[
        Path | None,
        typer.Option(help="Federation params, YAML or JSON (rounds, num_groups, model...)."),
    ] = None,
    num_classes: Annotated[
        int | None,
        typer.Option(min=2, help="Number of classes; the held-out labels' largest + 1 by default."),
    ] = None,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Set a federation up in the workspace: its clients (keyed hashes), groups and holdout."""
    from unlearn_ops.workflow.federated_setup import init_federation

    ws = open_workspace(workspace)
    done = init_federation(ws, sites, holdout, config, num_classes)

    def lines() -> None:
        sizes = ", ".join(f"{n}" for n in done["groups"].values())
        typer.echo(
            f"federation of {done['clients']} clients in {len(done['groups'])} group(s) "
            f"({sizes} clients), {done['num_features']} features, {done['num_classes']} "
            f"classes, {done['rounds']} rounds; next: `unlearn-ops federation train "
            "--flower-home HOME`"
        )

    emit(as_json, done, lines)


@app.command("train")
def train(
    flower_home: HomeOption,
    run_name: Annotated[
        str | None,
        typer.Option(help="The run's folder name, new (`train`, `train-2`... by default)."),
    ] = None,
    flower_bin: BinOption = None,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Train every client group on the deployment; the served model becomes champion."""
    from pipelines.federated import federated_train

    ws = open_workspace(workspace)
    version = run_flow(
        federated_train,
        str(ws.root),
        *_deployment(ws, flower_home, flower_bin),
        run_name,
    )
    emit(as_json, {"version": version}, lambda: typer.echo(f"version {version} is champion"))


@app.command("remove")
def remove(
    request: Annotated[Path, typer.Option(help="The signed request naming a `client_id`.")],
    flower_home: HomeOption,
    flower_bin: BinOption = None,
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
        *_deployment(ws, flower_home, flower_bin),
        chosen,
        how,
    )
    done: dict[str, Any] = {"version": version, "reason": chosen, "method": how}
    lines = [f"client removed ({chosen}, {how}); version {version} is champion"]
    if how == "federaser":
        from unlearn_ops.timestamps import format_datetime
        from unlearn_ops.workflow.approx_versions import exact_due

        due = exact_due(ws, ws.registry().get_version(version).request_ids)
        done["exact_due"] = None if due is None else due.isoformat()
        lines.append(
            "PROVISIONAL (approximate): remove the client exactly before "
            f"{'its deadline' if due is None else format_datetime(due)}: "
            "`unlearn-ops federation remove-exactly` (or serve it: `--serve`)"
        )
    emit(as_json, done, lambda: typer.echo("\n".join(lines)))


@app.command("remove-exactly")
def remove_exactly(
    flower_home: HomeOption,
    flower_bin: BinOption = None,
    serve: ServeOption = False,
    interval_hours: IntervalHoursOption = 24.0,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Remove exactly every client FedEraser removed (one group retrain per group)."""
    from pipelines.federated import remove_clients_exactly, serve_remove_exactly

    ws = open_workspace(workspace)
    root, deployment = str(ws.root), _deployment(ws, flower_home, flower_bin)
    serve_or_run_once(
        "remove-clients-exactly",
        ws.root,
        serve=(lambda seconds: serve_remove_exactly(root, *deployment, interval_seconds=seconds))
        if serve
        else None,
        interval_hours=interval_hours,
        run_once=lambda: run_flow(remove_clients_exactly, root, *deployment),
        describe=lambda result: (
            f"version {result['version']} is champion: group(s) "
            f"{', '.join(map(str, result['groups']))} retrained exactly for "
            f"{', '.join(result['requests'])}"
        ),
        as_json=as_json,
    )


@app.command("certify")
def certify(
    version: Annotated[str, typer.Argument(help="A federated version, or an alias.")],
    flower_home: HomeOption,
    groups: Annotated[
        str | None,
        typer.Option(help="Comma-separated group ids; by default the groups it retrained."),
    ] = None,
    flower_bin: BinOption = None,
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
        *_deployment(ws, flower_home, flower_bin),
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

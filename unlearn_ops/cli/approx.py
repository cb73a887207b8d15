"""Commands of monolithic workspaces (issue 14): adopt a registered model, run the exact retrain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unlearn_ops.cli.flow_runs import run_flow, serve_or_run_once
from unlearn_ops.cli.options import IntervalHoursOption, JsonOption, ServeOption, WorkspaceOption
from unlearn_ops.cli.output import emit, open_workspace

__all__ = ["adopt", "retrain_exact"]


def adopt(
    model_uri: Annotated[
        str, typer.Argument(help="The model in MLflow: models:/NAME/VERSION or runs:/ID/PATH.")
    ],
    data: Annotated[
        Path,
        typer.Option(
            help="Its training table (.csv/.parquet) with an id column.",
            exists=True,
            dir_okay=False,
            resolve_path=True,
        ),
    ],
    directory: Annotated[
        Path, typer.Option("--into", help="Workspace directory to create.", resolve_path=True)
    ] = Path("."),
    id_column: Annotated[str, typer.Option(help="Record id column of the table.")] = "record_id",
    label_column: Annotated[str, typer.Option(help="Label column of the table.")] = "label",
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow server or store holding the model (MLFLOW_TRACKING_URI by default).",
            envvar="MLFLOW_TRACKING_URI",
        ),
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Registered name in the workspace; the directory's name.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Take over a torch classifier registered in MLflow as version 1 of a monolithic workspace.

    Every check (a torch MLP of the documented layout, features, ids) runs before anything
    is created.
    """
    import tempfile

    from pipelines.approximate import adopt_model
    from unlearn_ops.adapters.dvc.lineage import init_repository
    from unlearn_ops.adapters.mlflow.adopted import load_torch_classifier
    from unlearn_ops.params import Params
    from unlearn_ops.sisa.training import serialize_state
    from unlearn_ops.workflow.approx_adopt import check_adoptable, read_adopted_table
    from unlearn_ops.workflow.workspace import write_workspace_files

    dataset = read_adopted_table(model_uri, data, id_column, label_column)
    module = load_torch_classifier(model_uri, tracking_uri)
    found = check_adoptable(model_uri, module, dataset)
    directory = directory.resolve()
    if (directory / "params.yaml").exists():
        from unlearn_ops.errors import AdoptionError

        raise AdoptionError(model_uri, f"{directory} is a workspace already", "use --into NEW")
    name = model_name or "".join(c if c.isalnum() or c in "-_." else "-" for c in directory.name)
    params = Params.from_mapping(
        {
            "dataset": {"source": str(data), "id_column": id_column, "label_column": label_column},
            "sisa": {"shards": 1, "slices": 1},
            "model": {"name": "mlp", "hidden_sizes": list(found.hidden_sizes)},
            "training": {"mode": "monolithic"},
            "registry": {"model_name": name.strip("-.") or "unlearn-ops-model"},
        },
        source="adopt options",
    )
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    with tempfile.TemporaryDirectory(prefix="unlearn-adopt-") as scratch:
        weights = Path(scratch) / "adopted.pt"
        weights.write_bytes(serialize_state(state))
        write_workspace_files(directory, params)
        init_repository(directory)
        result = run_flow(adopt_model, str(directory), str(weights), model_uri)
    emit(
        as_json,
        {**result, "workspace": str(directory)},
        lambda: typer.echo(
            f"adopted {model_uri} as version {result['version']} of {directory} "
            f"({result['records']} records, held-out accuracy {result['accuracy']:.4f}); "
            "forgets are now approximate first, then exact (unlearn-ops retrain-exact)"
        ),
    )


def retrain_exact(
    serve: ServeOption = False,
    interval_hours: IntervalHoursOption = 24.0,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Retrain a monolithic model exactly for every request served only approximately."""
    from pipelines.approximate import retrain_exactly, serve_exact_retrain

    root = str(open_workspace(workspace).root)
    serve_or_run_once(
        "retrain-exactly",
        Path(root),
        serve=(lambda seconds: serve_exact_retrain(root, interval_seconds=seconds))
        if serve
        else None,
        interval_hours=interval_hours,
        run_once=lambda: run_flow(retrain_exactly, root),
        describe=lambda result: (
            f"version {result['version']} is champion: the exact retrain "
            f"for {', '.join(result['requests'])} (held-out accuracy {result['accuracy']:.4f})"
        ),
        as_json=as_json,
    )

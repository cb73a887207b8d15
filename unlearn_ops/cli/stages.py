"""The DVC stages that dvc.yaml runs: prepare, train-shard, evaluate, register."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unlearn_ops.cli.options import JsonOption, WorkspaceOption
from unlearn_ops.cli.output import emit, fail, open_workspace

__all__ = ["evaluate", "prepare", "register", "train_shard_command"]


def prepare(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """DVC stage: write the shard and held-out tables (forgotten records left out)."""
    from unlearn_ops.workflow.preparation import prepare_data

    counts = prepare_data(open_workspace(workspace))
    emit(
        as_json,
        {"records_per_shard": counts},
        lambda: typer.echo(f"wrote {len(counts)} shards, {sum(counts.values())} records"),
    )


def train_shard_command(
    shard: Annotated[str, typer.Argument(help="Shard id: 3 or shard-003.")],
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """DVC stage: train (or resume) one shard on its current file and serve it."""
    ws = open_workspace(workspace)
    try:
        shard_id = int(shard.removeprefix("shard-"))
    except ValueError:
        fail(f"not a shard id: {shard!r}; use a number such as 3 or a name such as shard-003")
    if shard_id not in ws.ensemble.shard_ids:
        fail(f"no shard {shard_id}: shards are 0..{len(ws.ensemble.shard_ids) - 1}")
    model = ws.ensemble.train_shard(shard_id)
    emit(
        as_json,
        {
            "shard_id": shard_id,
            "resumed_from_stage": model.resumed_from_stage,
            "weights_hash": model.weights_hash,
        },
        lambda: typer.echo(
            f"shard {shard_id}: trained stages {model.stages_trained or 'none (all cached)'}"
        ),
    )


def evaluate(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """DVC stage: held-out accuracy of the served ensemble into metrics.json."""
    from unlearn_ops.workflow.retraining import evaluate as evaluate_step

    metrics = evaluate_step(open_workspace(workspace))
    emit(as_json, metrics, lambda: typer.echo(f"held-out accuracy {metrics['accuracy']:.4f}"))


def register(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """DVC stage: gate the current state and register it as a version (champion if it passes)."""
    from unlearn_ops.serving.promotion import champion_accuracy, promote
    from unlearn_ops.workflow.registration import register_version
    from unlearn_ops.workflow.retraining import evaluate as evaluate_step
    from unlearn_ops.workflow.retraining import run_gates

    ws = open_workspace(workspace)
    metrics = ws.read_json(ws.metrics_path) or evaluate_step(ws)
    gates = run_gates(ws, metrics, champion_accuracy(ws))
    version = register_version(
        ws,
        kind="repro",
        requests=[],
        trained=[],
        revision=ws.lineage().current_revision(ws.ensemble.shard_ids),
        gates=gates,
        metrics=metrics,
        timings={},
    )
    promote(ws, version, gates)
    emit(
        as_json,
        version.to_dict(),
        lambda: typer.echo(f"registered version {version.version} and made it champion"),
    )

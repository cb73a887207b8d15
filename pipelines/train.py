"""The `train-ensemble` flow: dataset -> shards (DVC) -> all shards trained -> gates -> v1."""

from __future__ import annotations

from typing import Any

from prefect import flow

from pipelines import tasks
from pipelines.stages import retrain_and_register
from unlearn_ops.serving.promotion import champion_accuracy
from unlearn_ops.workflow.timing import Stopwatch
from unlearn_ops.workflow.workspace import Workspace


@flow(name="train-ensemble")
def train_ensemble(workspace: str) -> dict[str, Any]:
    """Shard the workspace's dataset, train every shard, gate, register and promote.

    Example:
        >>> train_ensemble("my-workspace")  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    watch = Stopwatch()
    with ws.lock():
        with watch.phase("data"):
            counts = tasks.prepare_data(ws)
            baseline = champion_accuracy(ws)
        registered = retrain_and_register(
            ws,
            watch,
            shard_ids=ws.ensemble.shard_ids,
            baseline=baseline,
            kind="train",
            message="unlearn-ops: train all shards",
        )
    return {**registered.summary(watch), "records": sum(counts.values())}

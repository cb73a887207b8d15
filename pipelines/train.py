"""The `train-ensemble` flow: dataset -> shards (DVC) -> all shards trained -> gates -> v1."""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from pipelines import tasks
from unlearn_ops.steps import Stopwatch, champion_accuracy, workspace_lock
from unlearn_ops.workspace import Workspace


@flow(name="train-ensemble")
def train_ensemble(workspace: str) -> dict[str, Any]:
    """Shard the workspace's dataset, train every shard, gate, register and promote.

    Example:
        >>> train_ensemble("my-workspace")  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    watch = Stopwatch()
    with workspace_lock(ws):
        with watch.phase("data"):
            counts = tasks.prepare_data(ws)
        with watch.phase("retraining"):
            trained = [
                f.result() for f in tasks.train_shard.map(unmapped(ws), ws.ensemble.shard_ids)
            ]
        with watch.phase("evaluation"):
            metrics = tasks.evaluate(ws)
        with watch.phase("gates"):
            gates = tasks.run_gates(ws, metrics, champion_accuracy(ws))
        with watch.phase("lineage"):
            revision = tasks.record_revision(ws, "unlearn-ops: train all shards")
        with watch.phase("registration"):
            version = tasks.register_version(
                ws,
                kind="train",
                requests=[],
                trained=trained,
                revision=revision,
                gates=gates,
                metrics=metrics,
                timings=dict(watch.seconds),
            )
            tasks.promote_and_close(ws, [], version, gates)
    return {
        "version": version.version,
        "records": sum(counts.values()),
        "accuracy": metrics["accuracy"],
        "git_sha": revision.git_sha,
        "gates": {g.gate: g.passed for g in gates},
        "timings": watch.seconds,
    }

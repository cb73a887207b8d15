"""The second half that every model-changing flow shares: retrain, gate, record, register.

`train-ensemble`, `forget-records` and `rollback-model` differ in how they change the data
or the params; from there on they run the same tasks in the same order (see
docs/ARCHITECTURE.md, "The order in a forget, and why"): train the stale shards, evaluate,
gate, commit the data revision, register the version, move `champion` only if the gates
pass, and tag the versions that now miss a deletion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from prefect import unmapped

from pipelines import tasks
from unlearn_ops.requests import ForgetRequest
from unlearn_ops.steps import ShardTrained, Stopwatch
from unlearn_ops.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.adapters.dvc_lineage import DataRevision
    from unlearn_ops.adapters.gx_gates import GateResult
    from unlearn_ops.adapters.mlflow_registry import VersionInfo

__all__ = ["Registered", "retrain_and_register"]


@dataclass(frozen=True)
class Registered:
    """What the second half of a flow produced."""

    trained: list[ShardTrained]
    metrics: dict[str, float]
    gates: list[GateResult]
    revision: DataRevision
    version: VersionInfo

    def summary(self, watch: Stopwatch) -> dict[str, Any]:
        """The fields every flow returns."""
        return {
            "version": self.version.version,
            "retrained": [
                {"shard_id": t.shard_id, "first_stage": t.first_stage, "stages": list(t.stages)}
                for t in self.trained
                if t.stages
            ],
            "accuracy": self.metrics["accuracy"],
            "git_sha": self.revision.git_sha,
            "gates": {g.gate: g.passed for g in self.gates},
            "timings": watch.seconds,
        }


def retrain_and_register(
    ws: Workspace,
    watch: Stopwatch,
    *,
    shard_ids: Sequence[int],
    baseline: float | None,
    kind: Literal["train", "forget", "replay"],
    message: str,
    requests: Sequence[ForgetRequest] = (),
    replayed: Sequence[str] = (),
) -> Registered:
    """Train `shard_ids` (in parallel), gate against `baseline`, commit, register, promote.

    Raises:
        GateFailedError: the version is registered with its gate results, not promoted.
    """
    with watch.phase("retraining"):
        trained = [f.result() for f in tasks.train_shard.map(unmapped(ws), list(shard_ids))]
    with watch.phase("evaluation"):
        metrics = tasks.evaluate(ws)
    with watch.phase("gates"):
        gates = tasks.run_gates(ws, metrics, baseline)
    with watch.phase("lineage"):
        revision = tasks.record_revision(ws, message, requests)
        if requests:
            tasks.mark_applied(ws, requests, revision)
    with watch.phase("registration"):
        version = tasks.register_version(
            ws,
            kind=kind,
            requests=requests,
            trained=trained,
            revision=revision,
            gates=gates,
            metrics=metrics,
            timings=dict(watch.seconds),
            replayed=replayed,
        )
        tasks.promote_and_close(ws, requests, version, gates)
        # Versions trained on records forgotten since can never be champion again: say so.
        tasks.mark_unsafe_versions(ws)
    return Registered(trained, metrics, gates, revision, version)

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
from unlearn_ops.adapters.dask.runner import shard_placement
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.serving.promotion import champion_accuracy
from unlearn_ops.workflow.retraining import ShardTrained
from unlearn_ops.workflow.timing import Stopwatch
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.adapters.gx.gates import GateResult
    from unlearn_ops.serving.versions import VersionInfo
    from unlearn_ops.workflow.revisions import DataRevision

__all__ = ["Registered", "forget_batch", "retrain_and_register"]


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
    with watch.phase("retraining"), shard_placement(ws.settings):
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


def forget_batch(ws: Workspace, batch: Sequence[ForgetRequest]) -> dict[str, Any]:
    """Forget a batch of requests; call it holding the workspace lock.

    Requests served already close without retraining (`status: noop`); otherwise each
    affected shard retrains once for the whole batch and one version serves them all.

    Raises:
        UnknownRecordsError, InvalidRequestError: the batch is refused, nothing changed.
        GateFailedError: the version is registered, not promoted; the ledger says failed.
    """
    if ws.params.monolithic:
        # One model, no shards to retrain: a provisional version now, the exact one later.
        from pipelines.approximate import forget_approximately

        return forget_approximately(ws, batch)
    watch = Stopwatch()
    with watch.phase("data"):
        # Legal holds first (issue 16): held records are never removed, whoever runs this.
        kept = tasks.hold_back(ws, batch)
        if not kept.proceed:
            return kept.answer()
        batch = kept.proceed
        # Both refuse a bad batch before anything is written: check reads only, and
        # receive validates every request before it appends the new ones.
        outcome = tasks.check_batch(ws, batch)
        tasks.receive_requests(ws, batch)
        if outcome.is_noop:
            answer = tasks.close_noop(ws, outcome)
            tasks.record_revision(ws, "unlearn-ops: requests honoured already")
            return answer
        baseline = champion_accuracy(ws)
        plan = tasks.apply_batch(ws, batch)
        stale = tasks.stale_shards(ws)
    names = ", ".join(r.request_id for r in batch)
    if len(names) > 200:
        names = f"{len(batch)} requests ({batch[0].request_id} ... {batch[-1].request_id})"
    registered = retrain_and_register(
        ws,
        watch,
        shard_ids=stale,
        baseline=baseline,
        kind="forget",
        message=f"unlearn-ops: forget {names}",
        requests=batch,
    )
    return {
        **registered.summary(watch),
        "requests": [r.request_id for r in batch],
        "plan": plan.to_dict(),
        **({"held": kept.held} if kept.held else {}),
    }

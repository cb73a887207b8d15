"""The task sequences every model-changing flow shares: admit a batch; evaluate to register.

Wiring only. :func:`admit_batch` is the start of a forget (legal holds, check, receive,
close a batch served already); :func:`evaluate_and_register` is the end of every flow that
makes a version (evaluate, gate, commit the data revision, register, close). The sharded
forget (:mod:`pipelines.stages`), the monolithic one and the exact retrain
(:mod:`pipelines.approximate`), training, rollback and adoption all run them, so the
order of docs/ARCHITECTURE.md ("The order in a forget, and why") is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from prefect import unmapped

from pipelines import tasks
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.workflow.retraining import ShardTrained
from unlearn_ops.workflow.timing import Stopwatch
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.serving.gates import GateResult
    from unlearn_ops.serving.versions import VersionInfo
    from unlearn_ops.workflow.batch import HeldBack
    from unlearn_ops.workflow.revisions import DataRevision

__all__ = ["Admitted", "Registered", "admit_batch", "evaluate_and_register", "train_shards"]


def train_shards(ws: Workspace, shard_ids: Sequence[int]) -> list[ShardTrained]:
    """Train `shard_ids` as tasks of the flow's task runner, in parallel.

    Workers read and write the workspace; with `UNLEARN_OPS_SHARD_EXCHANGE` they get the
    shard files and checkpoints through it instead (staged and collected here, in the
    flow's process; the run's prefix is deleted at the end, whatever happened).
    """
    from unlearn_ops.workflow.shard_exchange import exchange_for_run

    exchange = exchange_for_run(ws.settings)
    if exchange is None:
        return [f.result() for f in tasks.train_shard.map(unmapped(ws), list(shard_ids))]
    try:
        staged = [tasks.stage_shard(ws, exchange, shard_id) for shard_id in shard_ids]
        results = [f.result() for f in tasks.train_staged_shard.map(staged)]
        return [tasks.collect_shard(ws, exchange, result) for result in results]
    finally:
        exchange.clear()


@dataclass(frozen=True)
class Admitted:
    """A batch after the legal holds and the checks.

    Attributes:
        batch: the requests to execute (empty when `answer` is set).
        kept: the legal holds' split of the batch as it came.
        answer: the run's answer when it stops here (every request held, or served
            already); None when the batch goes on to be executed.
    """

    batch: list[ForgetRequest]
    kept: HeldBack
    answer: dict[str, Any] | None

    def held(self) -> dict[str, Any]:
        """The `held` field of a run's answer: present only when a request waits."""
        return {"held": self.kept.held} if self.kept.held else {}


def admit_batch(
    ws: Workspace,
    batch: Sequence[ForgetRequest],
    *,
    before_check: Callable[[Workspace], object] | None = None,
) -> Admitted:
    """Hold back what legal holds forbid, check and receive the rest, close a no-op batch.

    `before_check` runs once the holds have left something to execute, before the batch
    is checked (the monolithic forget checks its method there).

    Raises:
        UnknownRecordsError, InvalidRequestError: the batch is refused, nothing changed.
    """
    # Legal holds first (issue 16): held records are never removed, whoever runs this.
    kept = tasks.hold_back(ws, batch)
    if not kept.proceed:
        return Admitted([], kept, kept.answer())
    if before_check is not None:
        before_check(ws)
    # Both refuse a bad batch before anything is written: check reads only, and
    # receive validates every request before it appends the new ones.
    outcome = tasks.check_batch(ws, kept.proceed)
    tasks.receive_requests(ws, kept.proceed)
    if outcome.is_noop:
        answer = tasks.close_noop(ws, outcome)
        tasks.record_revision(ws, "unlearn-ops: requests honoured already")
        return Admitted(kept.proceed, kept, answer)
    return Admitted(kept.proceed, kept, None)


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


def evaluate_and_register(
    ws: Workspace,
    watch: Stopwatch,
    *,
    trained: Sequence[ShardTrained],
    baseline: float | None,
    kind: Literal["train", "forget", "replay"],
    message: str,
    close: Callable[[VersionInfo, list[GateResult]], object],
    requests: Sequence[ForgetRequest] = (),
    replayed: Sequence[str] = (),
    gates_of: Callable[[list[GateResult]], list[GateResult]] | None = None,
    approximate_method: str | None = None,
) -> Registered:
    """Evaluate, gate against `baseline`, commit `message`, register, then `close`.

    `close(version, gates)` moves `champion` (or not) and writes the ledger; `gates_of`,
    if given, turns the standard gates into the ones this flow is judged by.

    Raises:
        GateFailedError: from `close`: the version is registered, not promoted.
    """
    with watch.phase("evaluation"):
        metrics = tasks.evaluate(ws)
    with watch.phase("gates"):
        gates = tasks.run_gates(ws, metrics, baseline)
        if gates_of is not None:
            gates = gates_of(gates)
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
            approximate_method=approximate_method,
        )
        close(version, gates)
    return Registered(list(trained), metrics, gates, revision, version)

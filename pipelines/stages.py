"""The second half that every sharded flow shares: retrain, gate, record, register.

`train-ensemble`, `forget-records` and `rollback-model` differ in how they change the data
or the params; from there on they run the same tasks in the same order (see
docs/ARCHITECTURE.md, "The order in a forget, and why"): train the stale shards, evaluate,
gate, commit the data revision, register the version, move `champion` only if the gates
pass, and tag the versions that now miss a deletion. The sequences shared with the
monolithic flows (admit a batch; evaluate to register) are :mod:`pipelines.sequence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pipelines import tasks
from pipelines.sequence import Registered, admit_batch, evaluate_and_register, train_shards
from unlearn_ops.adapters.dask.runner import shard_placement
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.serving.promotion import champion_accuracy
from unlearn_ops.workflow.timing import Stopwatch
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.serving.gates import GateResult
    from unlearn_ops.serving.versions import VersionInfo

__all__ = ["Registered", "forget_batch", "retrain_and_register"]


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
        trained = train_shards(ws, shard_ids)

    def close(version: VersionInfo, gates: list[GateResult]) -> None:
        tasks.promote_and_close(ws, requests, version, gates)
        # Versions trained on records forgotten since can never be champion again: say so.
        tasks.mark_unsafe_versions(ws)

    return evaluate_and_register(
        ws,
        watch,
        trained=trained,
        baseline=baseline,
        kind=kind,
        message=message,
        close=close,
        requests=requests,
        replayed=replayed,
    )


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
        admitted = admit_batch(ws, batch)
        if admitted.answer is not None:
            return admitted.answer
        batch = admitted.batch
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
        **admitted.held(),
    }

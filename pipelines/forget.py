"""The `forget-records` flow: requests -> ledger -> data (DVC) -> stale shards -> gates -> version.

A batch of requests is one run: each affected shard retrains once for all of them.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped

from pipelines import tasks
from unlearn_ops.requests import ForgetRequest
from unlearn_ops.steps import Stopwatch, champion_accuracy, workspace_lock
from unlearn_ops.workspace import Workspace


@flow(name="forget-records")
def forget_records(workspace: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
    """Forget the records of a batch of requests and register the version that honours them.

    Args:
        workspace: the workspace directory.
        requests: deletion requests as dicts (`request_id`, `record_ids`, `reason`).

    Example:
        >>> forget_records("ws", [{"request_id": "r1", "record_ids": ["17"]}])  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    batch = [ForgetRequest.parse(request) for request in requests]
    watch = Stopwatch()
    with workspace_lock(ws):
        with watch.phase("data"):
            # Both refuse a bad batch before anything is written: check reads only, and
            # receive validates every request before it appends the new ones.
            outcome = tasks.check_batch(ws, batch)
            tasks.receive_requests(ws, batch)
            if outcome.is_noop:
                return tasks.close_noop(ws, outcome)
            baseline = champion_accuracy(ws)
            plan = tasks.apply_batch(ws, batch)
            stale = tasks.stale_shards(ws)
        with watch.phase("retraining"):
            trained = [f.result() for f in tasks.train_shard.map(unmapped(ws), stale)]
        with watch.phase("evaluation"):
            metrics = tasks.evaluate(ws)
        with watch.phase("gates"):
            gates = tasks.run_gates(ws, metrics, baseline)
        names = ", ".join(r.request_id for r in batch)
        with watch.phase("lineage"):
            revision = tasks.record_revision(ws, f"unlearn-ops: forget {names}", batch)
            tasks.mark_applied(ws, batch, revision)
        with watch.phase("registration"):
            version = tasks.register_version(
                ws,
                kind="forget",
                requests=batch,
                trained=trained,
                revision=revision,
                gates=gates,
                metrics=metrics,
                timings=dict(watch.seconds),
            )
            tasks.promote_and_close(ws, batch, version, gates)
            # Versions trained on these records can never be champion again: say so.
            tasks.mark_unsafe_versions(ws)
    return {
        "version": version.version,
        "requests": [r.request_id for r in batch],
        "plan": plan.to_dict(),
        "retrained": [
            {"shard_id": t.shard_id, "first_stage": t.first_stage, "stages": list(t.stages)}
            for t in trained
            if t.stages
        ],
        "accuracy": metrics["accuracy"],
        "git_sha": revision.git_sha,
        "gates": {g.gate: g.passed for g in gates},
        "timings": watch.seconds,
    }

"""The `forget-records` flow: requests -> ledger -> data (DVC) -> stale shards -> gates -> version.

A batch of requests is one run: each affected shard retrains once for all of them.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from pipelines import tasks
from pipelines.stages import retrain_and_register
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
                answer = tasks.close_noop(ws, outcome)
                tasks.record_revision(ws, "unlearn-ops: requests honoured already")
                return answer
            baseline = champion_accuracy(ws)
            plan = tasks.apply_batch(ws, batch)
            stale = tasks.stale_shards(ws)
        names = ", ".join(r.request_id for r in batch)
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
    }

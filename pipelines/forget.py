"""The `forget-records` flow: requests -> ledger -> data (DVC) -> stale shards -> gates -> version.

A batch of requests is one run: each affected shard retrains once for all of them.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from pipelines.stages import forget_batch
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.workflow.workspace import Workspace


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
    with ws.lock():
        return forget_batch(ws, batch)

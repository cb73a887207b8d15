"""The `certify-exactness` flow: the certificate's from-scratch retrainings on the task runner.

`unlearn-ops verify` runs the certificate in its own process by default; with
`UNLEARN_OPS_TASK_RUNNER=dask` it runs this flow, so that the shards retrain on the
cluster like the flows' training does (issue 15). Jobs carry tables, results are hashes.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import flow

from pipelines import tasks
from unlearn_ops.adapters.dask.runner import shard_placement
from unlearn_ops.sisa.verification import (
    Certificate,
    ScratchJob,
    ScratchResult,
    certify_exactness,
)
from unlearn_ops.workflow.certification import certify_version
from unlearn_ops.workflow.workspace import Workspace


@flow(name="certify-exactness")
def certify_shards(
    workspace: str, version: str | None = None, shard_ids: list[int] | None = None
) -> Certificate:
    """The exactness certificate of a version (the served ensemble when None).

    Example:
        >>> run_flow(certify_shards, "ws", "3")  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)

    def on_task_runner(jobs: Sequence[ScratchJob]) -> list[ScratchResult]:
        with shard_placement(ws.settings):
            futures = tasks.retrain_from_scratch.map(list(jobs))
        return [future.result() for future in futures]

    if version is None:
        return certify_exactness(ws.ensemble, shard_ids, mapper=on_task_runner)
    return certify_version(ws, version, shard_ids, mapper=on_task_runner)

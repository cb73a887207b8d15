"""The `rollback-model` flow: `champion` back to a version that honours every deletion.

A safe target is restored and promoted; an unsafe one is refused, or with `replay`
rebuilt from its params over the current data (only shards that differ retrain) and
registered as a new `replay` version that must pass the gates.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from pipelines import tasks
from pipelines.stages import retrain_and_register
from unlearn_ops.serving.promotion import champion_accuracy
from unlearn_ops.workflow.timing import Stopwatch
from unlearn_ops.workflow.workspace import Workspace


@flow(name="rollback-model")
def rollback_model(workspace: str, to: str | None = None, replay: bool = False) -> dict[str, Any]:
    """Point `champion` at an earlier version, or at a replay of it that honours every deletion.

    Args:
        workspace: the workspace directory.
        to: version or alias to go back to; the `previous` alias when None.
        replay: rebuild a target that misses deletions instead of refusing it.

    Example:
        >>> rollback_model("ws", to="3", replay=True)  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    watch = Stopwatch()
    with ws.lock():
        plan = tasks.plan_rollback(ws, to, replay=replay)
        result: dict[str, Any] = {**plan.to_dict(), "noop": plan.action == "noop"}
        if plan.action == "noop":
            return result
        if plan.action == "move":
            ws = tasks.restore_version(ws, plan)
            git_sha = tasks.record_rollback(ws, plan)
            tasks.promote(ws, plan.target, [])
            tasks.mark_unsafe_versions(ws)
            return {**result, "version": plan.target.version, "git_sha": git_sha}
        with watch.phase("data"):
            baseline = champion_accuracy(ws)
            ws = tasks.restore_settings(ws, plan)
            stale = tasks.stale_shards(ws)
        registered = retrain_and_register(
            ws,
            watch,
            shard_ids=stale,
            baseline=baseline,
            kind="replay",
            message=f"unlearn-ops: replay deletions onto version {plan.target.version}",
            replayed=plan.missing,
        )
    return {**result, **registered.summary(watch)}

"""Running a flow with the task runner that the settings ask for.

Shard tasks are mapped onto a thread pool of `UNLEARN_OPS_MAX_PARALLEL_SHARDS` workers
(STACK.md: threads, one torch thread each). Prefect's own default pool is unbounded,
which on a small machine only makes shards compete for the same cores.
"""

from __future__ import annotations

from typing import Any

from unlearn_ops.settings import Settings, load_settings

__all__ = ["run_flow"]


def run_flow(flow: Any, *args: Any, settings: Settings | None = None, **kwargs: Any) -> Any:
    """Call `flow(*args, **kwargs)` on a thread pool sized by the settings.

    Example:
        >>> from pipelines.train import train_ensemble
        >>> run_flow(train_ensemble, "my-workspace")  # doctest: +SKIP
    """
    from prefect.task_runners import ThreadPoolTaskRunner

    workers = (settings or load_settings()).max_parallel_shards
    return flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(*args, **kwargs)

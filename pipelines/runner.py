"""Running a flow with the task runner that the settings ask for.

The thread pool by default, Dask through prefect-dask with `UNLEARN_OPS_TASK_RUNNER=dask`
(:mod:`unlearn_ops.adapters.dask.runner`, docs/SCALE.md).
"""

from __future__ import annotations

from typing import Any

from unlearn_ops.adapters.dask.runner import build_task_runner
from unlearn_ops.settings import Settings, load_settings

__all__ = ["run_flow"]


def run_flow(flow: Any, *args: Any, settings: Settings | None = None, **kwargs: Any) -> Any:
    """Call `flow(*args, **kwargs)` on the task runner of the settings.

    Raises:
        ClusterUnreachableError: a Dask address is set and nothing answers there (checked
            before the flow starts, so nothing has changed).

    Example:
        >>> from pipelines.train import train_ensemble
        >>> run_flow(train_ensemble, "my-workspace")  # doctest: +SKIP
    """
    runner = build_task_runner(settings or load_settings())
    return flow.with_options(task_runner=runner)(*args, **kwargs)

"""One shard per GPU: on Dask, shard tasks trained on CUDA each take a worker's `GPU`.

Runs on the CPU: a worker with two threads but one `GPU` resource runs the annotated tasks
one at a time, and the same tasks unannotated two at a time.
"""

from __future__ import annotations

import itertools
import time

import pytest
from prefect import flow, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect_dask.task_runners import DaskTaskRunner

from unlearn_ops.adapters.dask.runner import NO_DASHBOARD, shard_placement
from unlearn_ops.settings import Settings

pytestmark = [pytest.mark.flows, pytest.mark.servers]


@task(cache_policy=NO_CACHE)
def occupy(seconds: float, index: int) -> tuple[float, float]:
    """Stand in for a shard: hold the worker for `seconds`; when it ran."""
    started = time.monotonic()
    time.sleep(seconds)
    return started, time.monotonic()


def overlaps(spans: list[tuple[float, float]]) -> bool:
    ordered = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered))


@flow
def place(settings: Settings) -> list[tuple[float, float]]:
    with shard_placement(settings):
        futures = occupy.map(unmapped(1.5), [0, 1, 2])
    return [future.result() for future in futures]


def test_shards_on_cuda_take_one_gpu_each() -> None:
    import distributed

    # One cluster for both runs: its start-up costs more than the tasks.
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        resources={"GPU": 1},
        **NO_DASHBOARD,
    ) as cluster:
        runner = DaskTaskRunner(address=cluster.scheduler_address)
        on_gpu = place.with_options(task_runner=runner)(Settings(task_runner="dask", device="cuda"))
        on_cpu = place.with_options(task_runner=runner)(Settings(task_runner="dask", device="cpu"))
    assert not overlaps(on_gpu), on_gpu
    assert overlaps(on_cpu), on_cpu

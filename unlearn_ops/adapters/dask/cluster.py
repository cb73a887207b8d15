"""A `LocalCluster` of single-thread worker processes, to map a function over items.

What the Dask scaling benchmark times (:mod:`unlearn_ops.bench.dask_scaling`): the same
shards on 1 and on k worker processes, the cluster's start timed apart from the work.
Flows do not use this: their shards go through prefect-dask (:mod:`.runner`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from unlearn_ops.adapters.dask.runner import NO_DASHBOARD

__all__ = ["ClusterRun", "map_on_local_cluster"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ClusterRun(Generic[R]):
    """Results in item order, and where the time went."""

    results: list[R]
    start_seconds: float
    map_seconds: float
    workers: int
    worker_pids: tuple[int, ...]


def map_on_local_cluster(
    function: Callable[[T], R], items: Sequence[T], workers: int, *, timeout: float = 120.0
) -> ClusterRun[R]:
    """Run `function` on each item on a fresh `LocalCluster` of `workers` processes.

    Args:
        function: a picklable function (workers import its module).
        items: its arguments, each pickled to a worker.
        workers: worker processes, one thread each.
        timeout: seconds the workers get to start.
    """
    import os

    import distributed

    started = time.perf_counter()
    with (
        distributed.LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers, threads_per_worker=1, processes=True, **NO_DASHBOARD
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,  # type: ignore[no-untyped-call]
    ):
        client.wait_for_workers(workers, timeout=timeout)
        pids = client.run(os.getpid)
        ready = time.perf_counter()
        futures = client.map(function, list(items), pure=False)
        results: list[R] = client.gather(futures)
        done = time.perf_counter()
    return ClusterRun(results, ready - started, done - ready, workers, tuple(sorted(pids.values())))

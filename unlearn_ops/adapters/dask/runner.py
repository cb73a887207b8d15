"""The Prefect task runner that the settings ask for, and the placement of shard tasks.

`UNLEARN_OPS_TASK_RUNNER=threads` (the default) maps shard tasks onto a thread pool of
`UNLEARN_OPS_MAX_PARALLEL_SHARDS` workers (STACK.md: one torch thread each; Prefect's own
pool is unbounded, which on a small machine only makes shards compete for the cores).
`dask` hands them to prefect-dask: a `LocalCluster` of `UNLEARN_OPS_DASK_WORKERS` processes
of one thread each, started for the flow, or the scheduler at `UNLEARN_OPS_DASK_ADDRESS`.
Training on CUDA, each shard task asks for one `GPU` resource (issue 15): a worker started
with `--resources GPU=1` then trains one shard at a time, one shard per GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from unlearn_ops.errors import ClusterUnreachableError
from unlearn_ops.settings import Settings

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

__all__ = [
    "GPU_RESOURCE",
    "NO_DASHBOARD",
    "build_task_runner",
    "check_scheduler",
    "local_cluster_kwargs",
    "shard_placement",
    "trains_on_cuda",
]

GPU_RESOURCE = "GPU"
"""The Dask worker resource that a shard trained on CUDA takes one of."""

NO_DASHBOARD: dict[str, Any] = {
    "dashboard_address": None,
    # The scheduler's HTTP server (health, metrics) starts anyway, by default on port 8787,
    # which another cluster on the machine may hold: a free loopback port instead.
    "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
}
"""`LocalCluster` arguments: no dashboard, and no fixed port for the scheduler's HTTP."""

# Long enough for a scheduler on a busy machine, short enough for a typo to fail fast.
_CONNECT_SECONDS = 10.0


def trains_on_cuda(settings: Settings) -> bool:
    """Whether shards train on CUDA: asked for, or `auto` where this process sees a GPU.

    A flow process without a GPU that sends shards to GPU workers sets
    `UNLEARN_OPS_DEVICE=cuda`.
    """
    if settings.device == "cuda":
        return True
    if settings.device == "cpu":
        return False
    import torch

    return bool(torch.cuda.is_available())


def local_cluster_kwargs(settings: Settings) -> dict[str, Any]:
    """Arguments of the `LocalCluster` started for a flow: processes of one thread each.

    On CUDA there is at most one worker per visible GPU, each holding one `GPU` resource.

    Raises:
        DeviceUnavailableError: CUDA asked for, and this machine has no GPU.
    """
    workers = settings.dask_workers
    kwargs: dict[str, Any] = {"threads_per_worker": 1, "processes": True}
    if trains_on_cuda(settings):
        import torch

        from unlearn_ops.sisa.devices import resolve_device

        resolve_device("cuda")  # no GPU here: say so now, not from inside a worker
        workers = min(workers, torch.cuda.device_count())
        kwargs["resources"] = {GPU_RESOURCE: 1}
    return {"n_workers": workers, **kwargs, **NO_DASHBOARD}


def check_scheduler(address: str, timeout: float = _CONNECT_SECONDS) -> None:
    """Ask the scheduler at `address` who it is, so that a wrong address fails before a run.

    Raises:
        ClusterUnreachableError: nothing (or no Dask scheduler) answers there in `timeout`.
    """
    parts = urlsplit(address)
    if parts.scheme == "tcp":
        # A refused port fails at once here; distributed's connect retries until `timeout`.
        try:
            with socket.create_connection((parts.hostname or "", parts.port or 8786), timeout):
                pass
        except (OSError, ValueError) as exc:
            raise ClusterUnreachableError(address, str(exc) or type(exc).__name__) from exc
    # In a thread of its own: the caller may already run an event loop. The overall
    # `wait_for` matters: distributed's handshake waits without a limit on a silent port.
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            identity = pool.submit(asyncio.run, _identity(address, timeout)).result()
        except TimeoutError as exc:
            reason = f"no Dask handshake within {timeout:g} s"
            raise ClusterUnreachableError(address, reason) from exc
        except (OSError, ValueError) as exc:
            raise ClusterUnreachableError(address, str(exc) or type(exc).__name__) from exc
    if not isinstance(identity, dict) or identity.get("type") != "Scheduler":
        raise ClusterUnreachableError(address, f"it answers as {identity!r}, not as a scheduler")


async def _identity(address: str, timeout: float) -> Any:
    """The `identity` answer of the Dask server at `address`, within `timeout` seconds."""
    from distributed.comm.core import connect

    async def ask() -> Any:
        comm = await connect(address, timeout=timeout)  # type: ignore[no-untyped-call]
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            await comm.close()

    return await asyncio.wait_for(ask(), timeout)


def build_task_runner(settings: Settings) -> TaskRunner[Any]:
    """The task runner of the settings (see the module docstring).

    Raises:
        ClusterUnreachableError: `dask_address` is set and no scheduler answers there.
    """
    if settings.task_runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=settings.max_parallel_shards)
    from prefect_dask.task_runners import DaskTaskRunner

    if settings.dask_address is not None:
        check_scheduler(settings.dask_address)
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(settings))


@contextlib.contextmanager
def shard_placement(settings: Settings) -> Iterator[None]:
    """Around the submission of shard tasks: on Dask and CUDA, each asks for one GPU.

    Elsewhere it does nothing (a thread pool has no resources; CPU workers have no GPU to
    ask for, and a task asking for a resource that no worker has would wait forever).
    """
    if settings.task_runner != "dask" or not trains_on_cuda(settings):
        yield
        return
    from dask.base import annotate

    with annotate(resources={GPU_RESOURCE: 1}):
        yield

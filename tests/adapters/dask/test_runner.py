"""The task runner chosen from the settings, and clear refusals of a bad runner or address."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask.task_runners import DaskTaskRunner

from unlearn_ops.adapters.dask.runner import (
    build_task_runner,
    check_scheduler,
    local_cluster_kwargs,
    shard_placement,
    trains_on_cuda,
)
from unlearn_ops.errors import ClusterUnreachableError, ConfigError, DeviceUnavailableError
from unlearn_ops.settings import Settings, load_settings


def test_threads_by_default_sized_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNLEARN_OPS_TASK_RUNNER", raising=False)
    monkeypatch.setenv("UNLEARN_OPS_MAX_PARALLEL_SHARDS", "3")
    runner = build_task_runner(load_settings())
    assert isinstance(runner, ThreadPoolTaskRunner)
    assert runner._max_workers == 3


def test_dask_starts_a_local_cluster_of_single_thread_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_TASK_RUNNER", "dask")
    monkeypatch.setenv("UNLEARN_OPS_DASK_WORKERS", "2")
    monkeypatch.setenv("UNLEARN_OPS_DEVICE", "cpu")
    runner = build_task_runner(load_settings())
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address is None
    assert runner.cluster_kwargs == {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
    }


def test_a_local_cluster_for_cuda_needs_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceUnavailableError, match="cuda"):
        local_cluster_kwargs(Settings(task_runner="dask", device="cuda"))


def test_a_bad_runner_name_is_one_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNLEARN_OPS_TASK_RUNNER", "ray")
    with pytest.raises(
        ConfigError, match="UNLEARN_OPS_TASK_RUNNER: Input should be 'threads' or 'dask'"
    ):
        load_settings()


def test_an_address_that_is_no_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNLEARN_OPS_DASK_ADDRESS", "127.0.0.1:8786")
    with pytest.raises(ConfigError, match="UNLEARN_OPS_DASK_ADDRESS"):
        load_settings()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_address_fails_before_any_run() -> None:
    address = f"tcp://127.0.0.1:{closed_port()}"
    with pytest.raises(ClusterUnreachableError, match=f"no Dask scheduler answers at {address}"):
        build_task_runner(Settings(task_runner="dask", dask_address=address))


@pytest.fixture
def not_a_scheduler() -> Iterator[str]:
    """A loopback port that accepts connections and says nothing (no Dask handshake)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        try:
            while True:
                accepted.append(server.accept()[0])
        except OSError:
            return  # closed by the teardown

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for connection in accepted:
        connection.close()
    thread.join(5)


def test_a_port_without_a_scheduler_is_unreachable_too(not_a_scheduler: str) -> None:
    with pytest.raises(ClusterUnreachableError, match=not_a_scheduler):
        check_scheduler(not_a_scheduler, timeout=2)


def test_shards_ask_for_a_gpu_only_on_dask_with_cuda() -> None:
    from dask.base import get_annotations

    cases = {
        ("dask", "cuda"): {"resources": {"GPU": 1}},
        ("dask", "cpu"): {},
        ("threads", "cuda"): {},
    }
    for (runner, device), expected in cases.items():
        with shard_placement(Settings(task_runner=runner, device=device)):
            assert get_annotations() == expected, (runner, device)
    assert get_annotations() == {}


def test_auto_trains_on_cuda_only_where_a_gpu_is_seen() -> None:
    import torch

    assert trains_on_cuda(Settings(device="auto")) is torch.cuda.is_available()
    assert trains_on_cuda(Settings(device="cuda")) is True
    assert trains_on_cuda(Settings(device="cpu")) is False

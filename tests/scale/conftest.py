"""Fixtures of the scale tests: Prefect's test server, a prepared workspace, a Dask cluster
started apart from the flows (`dask scheduler` + `dask worker` processes on loopback)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipelines.conftest import make_workspace
from tests.pipelines.conftest import prefect_server as prefect_server  # the session server
from unlearn_ops.adapters.process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def prepared_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real git + DVC workspace (digits, S=3, R=2) with its shards written, nothing trained."""
    from unlearn_ops.settings import Settings
    from unlearn_ops.workflow.preparation import prepare_data
    from unlearn_ops.workflow.workspace import Workspace

    root = make_workspace(tmp_path_factory.mktemp("scale") / "template")
    prepare_data(Workspace.open(root, Settings(device="cpu")))
    return root


@pytest.fixture
def prepared_copy(tmp_path: Path, prepared_template: Path) -> Path:
    """A private copy of the prepared workspace (git, DVC and data included)."""
    root = tmp_path / "ws"
    shutil.copytree(prepared_template, root, symlinks=True)
    return root


def copy_for_dask(
    template: Path, root: Path, monkeypatch: pytest.MonkeyPatch, **settings: str
) -> Path:
    """A copy of `template` at `root`, whose flows run their shards on Dask from now on.

    `settings` are more UNLEARN_OPS_* variables by their lower-case names (`dask_workers`).
    """
    shutil.copytree(template, root, symlinks=True)
    monkeypatch.setenv("UNLEARN_OPS_TASK_RUNNER", "dask")
    for name, value in settings.items():
        monkeypatch.setenv(f"UNLEARN_OPS_{name.upper()}", value)
    return root


@pytest.fixture(scope="module")
def separate_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dask scheduler` and two `dask worker` processes (one thread each) on loopback.

    Yields the scheduler's address; every process group is stopped afterwards.
    """
    import distributed

    logs = tmp_path_factory.mktemp("dask-cluster")
    dask = str(Path(sys.executable).with_name("dask"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    port, http = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    argv = [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    processes = [
        ServerProcess(
            [*argv, "--dashboard-address", f"127.0.0.1:{http}"],
            health_url=f"http://127.0.0.1:{http}/health",
            log_path=logs / "scheduler.log",
            env=env,
        )
    ]
    for index in range(2):
        worker_http = free_port()
        processes.append(
            ServerProcess(
                [
                    dask,
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--dashboard-address",
                    f"127.0.0.1:{worker_http}",
                    "--name",
                    f"w{index}",
                ],
                health_url=f"http://127.0.0.1:{worker_http}/health",
                log_path=logs / f"worker-{index}.log",
                env=env,
            )
        )
    try:
        for process in processes:
            process.start()
            outcome = process.wait_healthy(timeout=120)
            assert outcome == "healthy", f"{process.argv[:2]} {outcome}: {process.log_tail()}"
        with distributed.Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.stop()

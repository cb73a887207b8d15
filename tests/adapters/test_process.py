"""Server process groups against real processes: an HTTP server, a crash, a stubborn worker."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from unlearn_ops.adapters.process import (
    ServerProcess,
    group_alive,
    http_ok,
    process_started_at,
    stop_groups,
)
from unlearn_ops.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _group_gone(group_id: int) -> bool:
    """No process at all is left in the group, not even a zombie."""
    members = []
    for process in psutil.process_iter(["pid"]):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            members += [process.pid] if os.getpgid(process.pid) == group_id else []
    return not members


def _port_closed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def _started(tmp_path: Path, code: str) -> ServerProcess:
    """A Python script as a server whose health URL nothing answers."""
    server = ServerProcess(
        _python(code),
        health_url=f"http://127.0.0.1:{_free_port()}/health",
        log_path=tmp_path / "server.log",
    )
    server.start()
    return server


def test_an_http_server_becomes_healthy_and_stops_with_its_group(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "health").write_text("ok")
    port = _free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    server = ServerProcess(
        [*argv, "--directory", str(site)],
        health_url=f"http://127.0.0.1:{port}/health",
        log_path=tmp_path / "server.log",
    )
    assert not server.running
    server.start()
    try:
        assert os.getpgid(server.pid) == server.pid  # it leads its own group
        assert os.getpgid(server.pid) != os.getpgid(0)
        assert server.wait_healthy(timeout=60, interval=0.05) == "healthy"
        assert server.running
        assert group_alive(server.pid)
        assert not http_ok(f"http://127.0.0.1:{port}/missing")  # a 404 is not healthy
    finally:
        assert server.stop(timeout=10) is True
    assert not server.running
    assert _group_gone(server.pid)
    assert _port_closed(port)
    assert "GET /health" in server.log_tail()
    assert server.stop() is True  # idempotent


def test_a_server_that_exits_is_reported_with_its_code_and_output(tmp_path: Path) -> None:
    server = _started(tmp_path, "import sys; print('exploded', flush=True); sys.exit(3)")
    assert server.wait_healthy(timeout=60, interval=0.05) == "exited"
    assert server.returncode == 3
    assert "exploded" in server.log_tail()
    assert server.stop() is True


def test_a_server_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    server = _started(tmp_path, "import time; time.sleep(120)")
    began = time.monotonic()
    assert server.wait_healthy(timeout=0.5, interval=0.05) == "timed out"
    assert 0.5 <= time.monotonic() - began < 10
    assert server.running
    assert server.stop(timeout=5) is True
    assert _group_gone(server.pid)


def test_a_worker_that_ignores_sigterm_is_killed_with_the_group(tmp_path: Path) -> None:
    worker_pid_file = tmp_path / "worker.pid"
    leader = subprocess.Popen(
        _python(
            f"""
            import os, signal, time
            if os.fork() == 0:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                open({str(worker_pid_file)!r} + ".tmp", "w").write(str(os.getpid()))
                os.rename({str(worker_pid_file)!r} + ".tmp", {str(worker_pid_file)!r})
                time.sleep(120)
            else:
                time.sleep(120)
            """
        ),
        start_new_session=True,
    )
    try:
        assert wait_until(worker_pid_file.exists, timeout=30, interval=0.02)
        worker_pid = int(worker_pid_file.read_text())
        assert os.getpgid(worker_pid) == leader.pid
        began = time.monotonic()
        assert stop_groups([leader.pid], timeout=0.5, kill_timeout=5) == []
        assert time.monotonic() - began >= 0.5  # SIGTERM was given its time first
        leader.wait(5)
        assert wait_until(lambda: _group_gone(leader.pid), timeout=5, interval=0.05)
        assert process_started_at(worker_pid) is None
    finally:
        if not _group_gone(leader.pid):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(5)


def test_stopping_groups_that_are_gone_is_no_error() -> None:
    assert stop_groups([], timeout=1) == []
    gone = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    gone.wait(30)
    assert not group_alive(gone.pid)
    assert stop_groups([gone.pid], timeout=1) == []


def test_a_start_time_tells_a_live_process_from_a_gone_one() -> None:
    started = process_started_at(os.getpid())
    assert started is not None
    assert 0 < time.time() - started < 24 * 3600
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    assert process_started_at(gone.pid) is None


def test_a_command_that_cannot_run_raises_oserror(tmp_path: Path) -> None:
    server = ServerProcess(
        [str(tmp_path / "no-such-server")],
        health_url="http://127.0.0.1:9/health",
        log_path=tmp_path / "server.log",
    )
    with pytest.raises(FileNotFoundError):
        server.start()
    assert not server.running
    assert server.stop() is True
    assert not http_ok("http://127.0.0.1:9/health", timeout=0.5)

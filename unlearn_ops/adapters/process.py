"""A server process in its own process group: start it, wait for its health URL, stop the group.

Servers such as `mlflow server` or `prefect server start` fork workers. Started in a new
session (``setsid``), the server leads its own process group, and signalling the group
reaches every worker: nothing is left listening after Ctrl-C or a test's teardown. The
group's members are found with psutil (zombies, which can no longer run, do not count).

Example::

    from unlearn_ops.adapters.process import ServerProcess

    server = ServerProcess(argv, health_url="http://127.0.0.1:5050/health", log_path=log)
    server.start()
    if server.wait_healthy(timeout=60) != "healthy":
        server.stop()
        print(server.log_tail())

Used by the MLflow UI (:mod:`unlearn_ops.adapters.mlflow.ui`) and the stack launcher
(``infra/launcher.py``), which records its groups in a file and stops them by id from
another process (:func:`stop_groups`).
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import psutil

from unlearn_ops.waiting import wait_until

__all__ = [
    "HealthOutcome",
    "ServerProcess",
    "file_lock",
    "group_alive",
    "http_ok",
    "process_started_at",
    "signal_group",
    "stop_groups",
]

HealthOutcome = Literal["healthy", "exited", "timed out"]

# Loopback health checks must never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# After SIGKILL, how long init may take to collect the orphaned members of a group.
_REAP_SECONDS = 5.0


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed): one process at a time decides
    whether to start a background process, so that two are never started."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether `url` answers 200 now (no proxy; any error or other status is False)."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (OSError, http.client.HTTPException, ValueError):
        return False


def process_started_at(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch); None if it is gone.

    With the pid, this tells a process from a later one that reused its pid.
    """
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _running_members(group_id: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) != group_id:
                continue
            if process.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                members.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, PermissionError):
            continue  # exited meanwhile, or not ours to look at
    return members


def _reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is a finished child of this process."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _group_exists(group_id: int) -> bool:
    """Whether the group has any member, zombies included."""
    _reap(group_id)  # our own finished child would linger as a zombie member
    try:
        os.killpg(group_id, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(group_id: int) -> bool:
    """Whether process group `group_id` has a member that can still run.

    Members left as zombies (orphans that an init process has not collected yet) do not
    count: they cannot run, and an init that never reaps would keep them forever.
    """
    return _group_exists(group_id) and bool(_running_members(group_id))


def signal_group(group_id: int, signum: signal.Signals) -> None:
    """Send `signum` to every member of the group; a group that is gone is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group_id, signum)


def stop_groups(group_ids: Sequence[int], timeout: float, kill_timeout: float = 5.0) -> list[int]:
    """Stop process groups together: SIGTERM, wait, then SIGKILL what is left.

    Args:
        group_ids: the groups (each the pid of the leader started in a new session).
        timeout: seconds the groups get to exit after SIGTERM.
        kill_timeout: seconds they get after SIGKILL.

    Returns:
        The groups that still have a running member after SIGKILL (normally none).
    """
    targets = [group_id for group_id in group_ids if group_alive(group_id)]
    for group_id in targets:
        signal_group(group_id, signal.SIGTERM)
    remaining = _wait_gone(targets, timeout)
    for group_id in remaining:
        signal_group(group_id, signal.SIGKILL)
    survivors = _wait_gone(remaining, kill_timeout)
    # Give init a moment to collect the orphaned members, so the groups vanish.
    wait_until(lambda: not any(_group_exists(g) for g in targets), _REAP_SECONDS, 0.05)
    return survivors


def _wait_gone(group_ids: Sequence[int], timeout: float) -> list[int]:
    remaining = list(group_ids)

    def all_gone() -> bool:
        remaining[:] = [group_id for group_id in remaining if group_alive(group_id)]
        return not remaining

    wait_until(all_gone, timeout, 0.05)
    return remaining


class ServerProcess:
    """One server started in its own process group, its output appended to a log file.

    Construction starts nothing; :meth:`start` does.

    Args:
        argv: the command line (no shell).
        health_url: a URL that answers 200 once the server is ready.
        log_path: the file the server's stdout and stderr are appended to.
        env: the server's environment (this process's when None).
        cwd: the server's working folder (this process's when None).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        health_url: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.health_url = health_url
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The leader's pid, which is also the group's id.

        Raises:
            RuntimeError: the server was not started.
        """
        if self.process is None:
            raise RuntimeError("the server was not started")
        return self.process.pid

    @property
    def running(self) -> bool:
        """The leader process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server in a new session (its own process group).

        Raises:
            OSError: the command cannot be run (not found, not executable).
        """
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (argv from the caller, no shell)
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if self.env is None else dict(self.env),
                cwd=self.cwd,
                start_new_session=True,
            )

    def healthy(self, timeout: float = 2.0) -> bool:
        """Whether the health URL answers 200 now."""
        return http_ok(self.health_url, timeout)

    def wait_healthy(self, timeout: float, interval: float = 0.25) -> HealthOutcome:
        """Poll the health URL until it answers 200, the leader exits, or time runs out.

        Returns:
            `healthy`, `exited` (see :attr:`returncode`) or `timed out`.
        """
        outcome: list[HealthOutcome] = []

        def settled() -> bool:
            if not self.running:
                outcome.append("exited")
            elif self.healthy():
                outcome.append("healthy")
            return bool(outcome)

        return outcome[0] if wait_until(settled, timeout, interval) else "timed out"

    def poll(self) -> int | None:
        """The leader's exit code once it has exited (collected, so Popen keeps it)."""
        return None if self.process is None else self.process.poll()

    @property
    def returncode(self) -> int | None:
        """The leader's exit code once it has exited."""
        return self.poll()

    def wait(self) -> int:
        """Block until the leader exits on its own; its exit code (0 if never started)."""
        return 0 if self.process is None else self.process.wait()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the whole group (SIGTERM, then SIGKILL); idempotent.

        Returns:
            True when no member of the group is left running.
        """
        if self.process is None:
            return True
        self.process.poll()  # Popen reaps its own child first, so its exit code is kept
        survivors = stop_groups([self.process.pid], timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(_REAP_SECONDS)  # collect the exit status so Popen does not warn
        return not survivors

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the log, or an empty string where there is none."""
        try:
            text = self.log_path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return text[-chars:]

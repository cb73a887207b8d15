"""The workspace's own Prefect server: started once in the background, found by later commands.

Without `PREFECT_API_URL`, Prefect starts a temporary server in every process that runs a
flow: 15 to 20 s of each `unlearn-ops forget` on two cores (issue 15). Instead the CLI
starts `prefect server start` once per workspace, on a free loopback port, in its own
process group, and records it in `WS/.unlearn-ops/prefect-server.json` (pid, start time,
port); later commands find it there, check that the same process still answers its
health URL, and point Prefect's client at it. A dead or foreign process (a reused pid)
is replaced by a new server. `unlearn-ops server stop` stops it; so does deleting (or
moving) the workspace: a small watcher process stops a server that nothing can find any
more, within :data:`WATCH_SECONDS`.

It serves Prefect's default database (`PREFECT_HOME`), the one the temporary servers use
too: the flow runs of every command stay visible in one UI, whichever way they ran.
Nothing here imports Prefect but :func:`reload_prefect_settings`: the server runs as a command.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from unlearn_ops.adapters.process import (
    ServerProcess,
    file_lock,
    http_ok,
    process_started_at,
    stop_groups,
)
from unlearn_ops.atomic import write_atomic
from unlearn_ops.errors import OrchestratorError

__all__ = [
    "LocalServer",
    "ensure_server",
    "reload_prefect_settings",
    "running_server",
    "stop_server",
    "watch",
]

# Servers this process started: they outlive it by design, and holding them here keeps
# Python from warning that a child it started is still running when the handle goes.
_STARTED: list[ServerProcess] = []
_WATCHERS: list[subprocess.Popen[bytes]] = []
# How often a server's watcher looks for its workspace.
WATCH_SECONDS = 10.0
_RECORD = "prefect-server.json"
_LOG = "prefect-server.log"
_LOCK = "prefect-server.lock"


@dataclass(frozen=True)
class LocalServer:
    """A Prefect server started for one workspace.

    Attributes:
        pid: the server's pid (the leader of its process group).
        started_at: when that process started (tells it from a later one with its pid).
        port: its loopback port.
    """

    pid: int
    started_at: float
    port: int

    @property
    def api_url(self) -> str:
        """What `PREFECT_API_URL` points at."""
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        """Prefect's UI, where the flow runs are."""
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        """The recorded process is the one running, and the API answers."""
        return _same_process(self) and http_ok(f"{self.api_url}/health")


def _state_dir(root: Path) -> Path:
    folder = root / ".unlearn-ops"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _read(root: Path) -> LocalServer | None:
    try:
        data = json.loads((root / ".unlearn-ops" / _RECORD).read_text(encoding="utf-8"))
        return LocalServer(int(data["pid"]), float(data["started_at"]), int(data["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _locked(root: Path) -> contextlib.AbstractContextManager[None]:
    """One command at a time decides whether to start the server (never two servers)."""
    return file_lock(_state_dir(root) / _LOCK)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def running_server(root: Path) -> LocalServer | None:
    """The workspace's server if it is running and answers; None otherwise."""
    server = _read(root)
    return server if server is not None and server.alive() else None


def ensure_server(root: Path, timeout: float = 120.0) -> tuple[LocalServer, bool]:
    """The workspace's running server, started now if none answers.

    Returns:
        The server, and whether it was started by this call.

    Raises:
        OrchestratorError: the server did not become healthy within `timeout` seconds
            (the end of its log is in the message).
    """
    with _locked(root):
        server = running_server(root)
        if server is not None:
            return server, False
        stale = _read(root)
        stale_started = None if stale is None else process_started_at(stale.pid)
        # Recorded, alive, not answering (hung, or half started before a crash): replace.
        if (
            stale is not None
            and stale_started is not None
            and abs(stale_started - stale.started_at) < 1.0
        ):
            stop_groups([stale.pid], timeout=10.0)
        port = _free_port()
        environment = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        environment.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        executable = Path(sys.executable).parent / "prefect"
        argv = [str(executable), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        log_path = _state_dir(root) / _LOG
        process = ServerProcess(
            argv,
            health_url=f"http://127.0.0.1:{port}/api/health",
            log_path=log_path,
            env=environment,
            cwd=root,
        )
        try:
            process.start()
            _STARTED.append(process)
        except OSError as exc:
            raise OrchestratorError("starting a local server", str(exc)) from exc
        outcome = process.wait_healthy(timeout)
        if outcome != "healthy":
            process.stop()
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-800:]
            raise OrchestratorError(f"starting a local server ({outcome})", tail)
        server = LocalServer(process.pid, process_started_at(process.pid) or time.time(), port)
        write_atomic(_state_dir(root) / _RECORD, json.dumps(asdict(server)) + "\n")
        _start_watcher(root, server)
        return server, True


def _start_watcher(root: Path, server: LocalServer) -> None:
    """A process that stops `server` once its workspace's state folder is gone (:func:`watch`)."""
    argv = [sys.executable, "-m", __name__, str(root), str(server.pid), repr(server.started_at)]
    _WATCHERS.append(
        subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [*argv, repr(WATCH_SECONDS)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    )


def watch(root: Path, server: LocalServer, interval: float) -> bool:
    """Stop `server` once `root/.unlearn-ops` is gone; return when the server has ended.

    Without that folder no command can find the server again (the workspace was deleted or
    moved): it would run on, unused, until the machine stops. Whether it was stopped here.
    """
    while _same_process(server):
        if not (root / ".unlearn-ops").is_dir():
            stop_groups([server.pid], timeout=20.0)
            return True
        time.sleep(interval)
    return False


def _same_process(server: LocalServer) -> bool:
    started = process_started_at(server.pid)
    return started is not None and abs(started - server.started_at) < 1.0


def stop_server(root: Path, timeout: float = 20.0) -> LocalServer | None:
    """Stop the workspace's server (its whole process group); the one stopped, or None."""
    with _locked(root):
        server = _read(root)
        (root / ".unlearn-ops" / _RECORD).unlink(missing_ok=True)
        if server is None:
            return None
        if not _same_process(server):
            return None  # gone already (or its pid now belongs to another process)
        stop_groups([server.pid], timeout=timeout)
        return server


def reload_prefect_settings() -> None:
    """Have an imported Prefect read its settings from the environment again.

    Prefect reads them once, at import; a warm runner's command (:mod:`unlearn_ops.cli.warm`)
    imported it before its environment (and `PREFECT_API_URL`) was set.
    """
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()


if __name__ == "__main__":  # the watcher: ROOT PID STARTED_AT INTERVAL
    watch(
        Path(sys.argv[1]),
        LocalServer(int(sys.argv[2]), float(sys.argv[3]), port=0),
        float(sys.argv[4]),
    )

"""The MLflow UI on a workspace's store: `mlflow server` in its own process group.

`mlflow server` forks workers, so it starts in a new session (its own process group) and
stops by signalling the whole group: nothing is left listening after Ctrl-C or a test's
teardown. Job execution is off (`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`): otherwise the
server forks a job runner of about ten processes for features this UI never uses.

Example::

    from unlearn_ops.adapters.mlflow.ui import MlflowUiServer

    with MlflowUiServer("sqlite:////abs/ws/mlflow.db", "/abs/ws/mlartifacts", port=5050) as ui:
        print(ui.model_version_url("my-model", "2"))

Failures to start become :class:`RegistryError` with the tail of the server's output.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from unlearn_ops.adapters.process import ServerProcess
from unlearn_ops.errors import RegistryError
from unlearn_ops.serving.provenance import ui_page_fragment

__all__ = ["MlflowUiServer", "find_free_port", "page_url"]

_OPERATION = "UI server"
_LOG_TAIL_CHARS = 2000


def page_url(base_url: str, model_name: str, version: str | None = None) -> str:
    """The UI page of a model version, or of the model when `version` is None."""
    return f"{base_url.rstrip('/')}/{ui_page_fragment(model_name, version)}"


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on at `host` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _tail(server: ServerProcess) -> str:
    return " ".join(server.log_tail(_LOG_TAIL_CHARS).strip().split()) or "(no output)"


def _port_in_use(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(eq=False)  # a live process: equal only to itself
class MlflowUiServer:
    """`mlflow server` on a backend store, started and stopped as one process group.

    Construction starts nothing; :meth:`start` (or ``with``) does.

    Args:
        backend_store_uri: the tracking and registry store (`sqlite:////abs/mlflow.db`).
        artifact_root: default artifact root for experiments the server creates (the
            workspace's runs keep the artifact location they were logged with).
        host: interface to listen on; loopback by default.
        port: TCP port.
        registry_store_uri: the registry store, if not the backend store.
        log_path: where the server's output goes; a temporary file (removed on stop) if None.
    """

    backend_store_uri: str
    artifact_root: str
    _: KW_ONLY
    host: str = "127.0.0.1"
    port: int = 5000
    registry_store_uri: str | None = None
    log_path: Path | None = None
    _server: ServerProcess | None = field(default=None, init=False, repr=False)
    _own_log: Path | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """The UI's base URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def model_version_url(self, model_name: str, version: str) -> str:
        """The page of a model version on this server."""
        return page_url(self.url, model_name, version)

    @property
    def running(self) -> bool:
        """The server process is alive."""
        return self._server is not None and self._server.running

    def command(self) -> list[str]:
        """The command line that starts the server (this interpreter's MLflow)."""
        command = [sys.executable, "-m", "mlflow", "server"]
        command += ["--backend-store-uri", self.backend_store_uri]
        if self.registry_store_uri and self.registry_store_uri != self.backend_store_uri:
            command += ["--registry-store-uri", self.registry_store_uri]
        command += ["--default-artifact-root", self.artifact_root]
        return [*command, "--host", self.host, "--port", str(self.port), "--workers", "1"]

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until `GET /health` answers.

        Raises:
            RegistryError: the port is taken, the server exited, or it was not healthy
                within `timeout` seconds (it is stopped then).
        """
        if self._server is not None:
            return
        if _port_in_use(self.host, self.port):
            raise RegistryError(
                _OPERATION,
                f"port {self.port} on {self.host} is already in use; pass another --port",
            )
        environment = dict(os.environ)
        environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        log_path = self.log_path
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="unlearn-ops-ui-", suffix=".log")
            os.close(handle)
            log_path = self._own_log = Path(name)
        server = self._server = ServerProcess(
            self.command(), health_url=f"{self.url}/health", log_path=log_path, env=environment
        )
        try:
            server.start()
            outcome = server.wait_healthy(timeout)
            if outcome == "exited":
                raise RegistryError(
                    _OPERATION,
                    f"`mlflow server` exited with code {server.returncode}: {_tail(server)}",
                )
            if outcome == "timed out":
                raise RegistryError(
                    _OPERATION,
                    f"no answer on {self.url}/health within {timeout:.0f} s: {_tail(server)}",
                )
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL). Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(timeout)
        if self._own_log is not None:
            self._own_log.unlink(missing_ok=True)
            self._own_log = None

    def wait(self) -> int:
        """Block until the server exits on its own; its exit code."""
        return 0 if self._server is None else self._server.wait()

    def serve_until_interrupted(
        self, on_ready: Callable[[], None] | None = None, timeout: float = 60.0
    ) -> int:
        """Start, call `on_ready`, block until Ctrl-C or SIGTERM, then stop the group.

        An interruption at any point after the call began (even while starting) stops
        the server: nothing is left running.

        Returns:
            0 when interrupted; the server's exit code if it ended on its own.

        Raises:
            RegistryError: the server did not start (see :meth:`start`).
        """
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
        try:
            self.start(timeout)
            if on_ready is not None:
                on_ready()
            return self.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            self.stop()
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)

    def __enter__(self) -> MlflowUiServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

"""The HTTP intake's server: the Starlette app of :mod:`.app`, served by uvicorn in a thread.

Construction starts nothing; :meth:`HttpIntake.start` (or ``with``) binds the socket in the
caller's thread (so an address in use is a :class:`~unlearn_ops.errors.ConfigError` there)
and serves from a daemon thread with its own event loop. uvicorn's own access log is off
and its loggers stay below WARNING's chatter; the app logs method, path and status only.

Example::

    from unlearn_ops.adapters.http.intake import HttpIntake

    with HttpIntake(workspace.inbox, settings, port=8080, on_accepted=wake_drain) as intake:
        print(intake.url)  # http://127.0.0.1:8080
        stop_event.wait()
    print(intake.received.counts())  # accepted, duplicates, refused
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING

from unlearn_ops.adapters.http.app import HEALTH_PATH, INTAKE_PATH, build_app, log_failure
from unlearn_ops.deletion.receive import Accepted, Outcome, ReceiveTally
from unlearn_ops.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

    from unlearn_ops.deletion.inbox import Inbox
    from unlearn_ops.settings import Settings

__all__ = ["HEALTH_PATH", "INTAKE_PATH", "HttpIntake"]

logger = logging.getLogger("unlearn_ops.http_intake")

_BACKLOG = 128  # a burst of producers waits to be accepted, not reset
_STARTUP_SECONDS = 30.0
_SHUTDOWN_SECONDS = 3  # requests in flight get this long to finish when stopping


@dataclass(eq=False, repr=False)
class HttpIntake:
    """The HTTP intake of one inbox, served from a daemon thread.

    Args:
        inbox: where accepted requests are recorded (and refusals).
        settings: the signing key, the bearer token and the time limits.
        host: interface to listen on; loopback by default.
        port: TCP port; 0 picks a free one (see :attr:`url` once started).
        on_accepted: called with the request id of each new request once it is recorded,
            before the answer (to wake a drain, say: keep it short); what it raises is
            logged, and the request is answered 202 all the same.
        body_timeout: seconds a declared body may take to arrive before a 408.
        receipt_for: the signed receipt of a served request, answered with its status
            (``GET /v1/deletion-requests/{id}``); None: statuses carry no receipt.

    Attributes:
        received: every delivery's outcome counted (accepted, duplicates, refused).
    """

    inbox: Inbox
    settings: Settings
    host: str = "127.0.0.1"
    port: int = 0
    on_accepted: Callable[[str], None] | None = None
    _: KW_ONLY
    body_timeout: float = 10.0
    receipt_for: Callable[[str], Mapping[str, object]] | None = None
    received: ReceiveTally = field(default_factory=ReceiveTally, init=False)
    _server: uvicorn.Server | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _bound_port: int | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __repr__(self) -> str:
        return f"HttpIntake({self.url!r}, inbox={self.inbox!r})"

    @property
    def url(self) -> str:
        """The base URL (with the port picked by the system once started on port 0)."""
        port = self.port if self._bound_port is None else self._bound_port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    @property
    def running(self) -> bool:
        """The server is serving."""
        return self._thread is not None and self._thread.is_alive()

    def _on_outcome(self, outcome: Outcome) -> None:
        self.received.add(outcome)
        callback = self.on_accepted
        if callback is None or not isinstance(outcome, Accepted):
            return
        try:
            callback(outcome.request_id)
        except Exception:  # the request is recorded whatever the callback does
            log_failure(f"on_accepted({outcome.request_id})")

    def start(self) -> HttpIntake:
        """Bind and serve in a daemon thread (no-op when already serving).

        Raises:
            ConfigError: the address cannot be listened on (in use, not an address here).
        """
        import uvicorn

        # uvicorn's own warnings (a request that is not HTTP) go to the process's handlers,
        # if it has any, and never to stderr by logging's last resort.
        uvicorn_logger = logging.getLogger("uvicorn")
        if not any(isinstance(h, logging.NullHandler) for h in uvicorn_logger.handlers):
            uvicorn_logger.addHandler(logging.NullHandler())
        with self._lock:
            if self._server is not None:
                return self
            sock = self._bind()
            app = build_app(
                self.inbox,
                self.settings,
                on_outcome=self._on_outcome,
                body_timeout=self.body_timeout,
                receipt_for=self.receipt_for,
            )
            config = uvicorn.Config(
                app,
                http="h11",
                loop="asyncio",
                lifespan="off",
                access_log=False,  # it logs the query string and the client: the app logs
                log_config=None,  # leave the process's logging as it is
                log_level=logging.WARNING,
                server_header=False,
                headers=[("server", "unlearn-ops-intake")],
                timeout_graceful_shutdown=_SHUTDOWN_SECONDS,
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(
                target=server.run,
                kwargs={"sockets": [sock]},
                name=f"http-intake-{sock.getsockname()[1]}",
                daemon=True,
            )
            thread.start()
            deadline = time.monotonic() + _STARTUP_SECONDS
            while not server.started and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            if not server.started:
                server.should_exit = True
                sock.close()
                raise ConfigError("the HTTP intake", ["the server did not start"])
            self._server, self._thread = server, thread
            self._bound_port = int(sock.getsockname()[1])
        logger.info("HTTP intake listening on %s", self.url)
        return self

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(_BACKLOG)
        except (OSError, OverflowError) as exc:  # OverflowError: a port past 65535
            sock.close()
            detail = getattr(exc, "strerror", None) or exc
            raise ConfigError(
                "the HTTP intake", [f"cannot listen on {self.host}:{self.port} ({detail})"]
            ) from exc
        return sock

    def stop(self) -> None:
        """Stop serving and close the socket (requests in flight get a few seconds)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = self._bound_port = None
        if server is None:
            return
        server.should_exit = True
        if thread is not None:
            thread.join()

    def __enter__(self) -> HttpIntake:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

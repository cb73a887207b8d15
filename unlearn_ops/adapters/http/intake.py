"""The HTTP intake: deletion requests POSTed by producers that cannot write to the S3 intake.

Two routes, JSON in and out, standard library only (:class:`http.server.ThreadingHTTPServer`)::

    POST /v1/deletion-requests    body: one envelope (see :mod:`unlearn_ops.deletion.envelope`)
    GET  /healthz                 {"status": "ok", "inbox": {"pending": 2, "rejected": 1}}

A request is vouched for by its HMAC signature, or, sent unsigned (no ``"signature"``),
by ``Authorization: Bearer <token>`` equal to `UNLEARN_OPS_REQUEST_BEARER_TOKEN`. The body
must come with a `Content-Length` of at most
:data:`~unlearn_ops.deletion.envelope.MAX_REQUEST_BYTES` (a chunked body is not read). The answers:

=====  ==========================================================================
202    ``{"request_id", "status": "new", "state"}``: recorded in the inbox (durable)
200    the same, with ``"status": "duplicate"``: seen before with the same content
400    ``malformed``: not JSON, wrong shape, a bad `Content-Length`, a short body
401    ``unsigned``, ``forged``, ``expired``, ``not-yet-valid``, ``unknown-key`` or
       ``bad-token`` (with ``WWW-Authenticate: Bearer``)
408    ``timeout``: the body did not arrive within 10 s
409    ``replayed-with-changes``: the request id arrived before with other content
411    ``length-required``; 413 ``too-large``
404    other paths; 405 other methods (with ``Allow``); 503 the inbox cannot be written
=====  ==========================================================================

A refusal is answered ``{"error": kind, "detail": message}`` and every refused delivery
(a POST to the intake path) is recorded with :meth:`Inbox.reject` as
``http:<client address>``, the kind and the message; a replay is recorded by
:meth:`Inbox.accept` itself. Other paths and methods are not deliveries: they are only
logged (a port scanner does not fill the inbox). The answer 202 (or
200) is sent only after :meth:`Inbox.accept` returned, so a request that was answered is
committed. The access log (logger `unlearn_ops.http_intake`) holds the method, the path
(without its query) and the status: never a header, the token or the body; nothing is
written to stderr.

Example::

    from unlearn_ops.adapters.http.intake import HttpIntake

    with HttpIntake(workspace.inbox, settings, port=8080, on_accepted=wake_drain) as intake:
        print(intake.url)  # http://127.0.0.1:8080
        stop_event.wait()
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from unlearn_ops.deletion.envelope import MAX_REQUEST_BYTES, verify_request
from unlearn_ops.deletion.inbox import Inbox
from unlearn_ops.errors import (
    ConfigError,
    InvalidRequestError,
    ReplayedRequestError,
    UnauthenticatedRequestError,
    UnlearnOpsError,
)
from unlearn_ops.settings import Settings

__all__ = ["HEALTH_PATH", "INTAKE_PATH", "HttpIntake"]

INTAKE_PATH = "/v1/deletion-requests"
HEALTH_PATH = "/healthz"

logger = logging.getLogger("unlearn_ops.http_intake")

_IO_TIMEOUT_SECONDS = 10.0  # a client that stalls longer is dropped
_DISCARD_TIMEOUT_SECONDS = 2.0
_DISCARD_LIMIT = 16 * MAX_REQUEST_BYTES  # read (and dropped) of a refused body, at most
_CHALLENGE = 'Bearer realm="unlearn-ops"'
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")


def _log_failure(what: str) -> None:
    """Log the exception being handled by its type and frames: its message may quote input."""
    exc_type, _, tb = sys.exc_info()
    name = "unknown" if exc_type is None else exc_type.__name__
    logger.error("%s failed with %s:\n%s", what, name, "".join(traceback.format_tb(tb)))


class _Server(ThreadingHTTPServer):
    """One thread per connection (daemon threads: a stalled client never blocks stop)."""

    daemon_threads = True
    request_queue_size = 128  # a burst of producers waits to be accepted, not reset

    def __init__(self, host: str, port: int, intake: HttpIntake) -> None:
        self.intake = intake
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failure in a handler: logged (frames only, no message), never to stderr."""
        _log_failure("handling a request")

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks the resolver for the host's full name: not needed here.
        TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    """Answers one request; every answer is JSON with a `Content-Length`."""

    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection
    server_version = "unlearn-ops-intake"
    sys_version = ""
    timeout = _IO_TIMEOUT_SECONDS

    def version_string(self) -> str:
        """The `Server` header: no Python version."""
        return self.server_version

    def __init__(self, request: Any, client_address: Any, server: _Server) -> None:
        self._status: int | None = None
        self._body_read = False
        super().__init__(request, client_address, server)

    # ------------------------------------------------------------------ routes
    def do_POST(self) -> None:
        """Record a deletion request (the intake path) or refuse it."""
        self._guarded(self._post)

    def do_GET(self) -> None:
        """The health check (with the inbox's counts); 405 on the intake path."""
        self._guarded(self._get)

    def _other_method(self) -> None:
        self._guarded(lambda: self._not_here(self._route()))

    do_HEAD = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_TRACE = (  # noqa: N815
        _other_method
    )

    def _guarded(self, route: Callable[[], None]) -> None:
        try:
            route()
        except Exception:
            _log_failure(f"{self.command} {self._route()}")
            if self._status is None:  # nothing answered yet
                self.close_connection = True
                self._answer(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    {"error": "internal-error", "detail": "the intake failed; retry later"},
                )

    def _post(self) -> None:
        path = self._route()
        if path != INTAKE_PATH:
            self._not_here(path)
            return
        body = self._read_body()
        if body is None:
            return
        intake = self.server.intake
        try:
            verified = verify_request(body, intake.settings, bearer_token=self._bearer_token())
        except UnauthenticatedRequestError as exc:
            self._refuse(
                HTTPStatus.UNAUTHORIZED, exc.kind, str(exc), {"WWW-Authenticate": _CHALLENGE}
            )
            return
        except InvalidRequestError as exc:
            self._refuse(HTTPStatus.BAD_REQUEST, exc.kind, str(exc))
            return
        try:
            accepted = intake.inbox.accept(verified, self._source)
        except ReplayedRequestError as exc:  # accept recorded the refusal
            logger.warning("refused a deletion request from %s (%s)", self._source, exc.kind)
            self._answer(HTTPStatus.CONFLICT, {"error": exc.kind, "detail": str(exc)})
            return
        except UnlearnOpsError as exc:  # the inbox cannot be written: the producer retries
            logger.error("the inbox refused a request: %s", exc)
            self._unavailable()
            return
        new = accepted.status == "new"
        if new:  # recorded: wake whoever drains the inbox, then answer
            intake._notify(accepted.request_id)
        self._answer(
            HTTPStatus.ACCEPTED if new else HTTPStatus.OK,
            {
                "request_id": accepted.request_id,
                "status": accepted.status,
                "state": accepted.state,
            },
        )

    def _get(self) -> None:
        path = self._route()
        if path != HEALTH_PATH:
            self._not_here(path)
            return
        try:
            counts = self.server.intake.inbox.counts()
        except UnlearnOpsError as exc:
            logger.error("health check: %s", exc)
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable"})
            return
        self._answer(HTTPStatus.OK, {"status": "ok", "inbox": counts})

    # ------------------------------------------------------------------ answers
    def _route(self) -> str:
        return urlsplit(self.path).path

    @property
    def _source(self) -> str:
        return f"http:{self.client_address[0]}"

    def _not_here(self, path: str) -> None:
        allowed = {INTAKE_PATH: "POST", HEALTH_PATH: "GET"}.get(path)
        if allowed is None:
            self._answer(
                HTTPStatus.NOT_FOUND,
                {"error": "not-found", "detail": f"POST requests to {INTAKE_PATH}"},
            )
        else:
            self._answer(
                HTTPStatus.METHOD_NOT_ALLOWED,
                {"error": "method-not-allowed", "detail": f"{path} answers {allowed} only"},
                {"Allow": allowed},
            )
        self._discard_body()

    def _unavailable(self) -> None:
        self._answer(
            HTTPStatus.SERVICE_UNAVAILABLE,
            {"error": "unavailable", "detail": "the inbox cannot record requests now; retry"},
            {"Retry-After": "30"},
        )

    def _refuse(
        self,
        status: HTTPStatus,
        kind: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Record a refused delivery in the inbox, then answer it."""
        try:
            self.server.intake.inbox.reject(self._source, kind, detail)
        except UnlearnOpsError as exc:
            logger.error("could not record a refused delivery: %s", exc)
        logger.warning("refused a deletion request from %s (%s)", self._source, kind)
        self._answer(status, {"error": kind, "detail": detail}, headers)

    def _answer(
        self,
        status: HTTPStatus,
        payload: Mapping[str, object],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        body = json.dumps(payload, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (bad request line, unknown method, ...) as JSON, echoing nothing."""
        status = HTTPStatus(code)
        self.close_connection = True
        kind = status.phrase.lower().replace(" ", "-")
        self._answer(status, {"error": kind, "detail": status.description or status.phrase})

    # ------------------------------------------------------------------ the request
    def _content_length(self) -> int | None:
        """The declared length; answers (and returns None) when there is none usable."""
        if self.headers.get("Transfer-Encoding") is not None:
            self._refuse(
                HTTPStatus.LENGTH_REQUIRED,
                "length-required",
                "send the body with a Content-Length (chunked bodies are not read)",
            )
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            self._refuse(
                HTTPStatus.LENGTH_REQUIRED, "length-required", "send a Content-Length header"
            )
            return None
        texts = {value.strip() for value in values}
        if len(texts) > 1 or not _CONTENT_LENGTH.fullmatch(next(iter(texts))):
            self._refuse(
                HTTPStatus.BAD_REQUEST,
                "malformed",
                "invalid request: Content-Length is not one number of bytes",
            )
            return None
        return int(next(iter(texts)))

    def _read_body(self) -> bytes | None:
        """The body (at most MAX_REQUEST_BYTES), or None when it was refused (answered)."""
        length = self._content_length()
        if length is None:
            return None
        if length > MAX_REQUEST_BYTES:
            self._refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "too-large",
                f"invalid request: {length:,} bytes, more than the {MAX_REQUEST_BYTES:,} allowed",
            )
            self._discard_body()
            return None
        self._body_read = True
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                "timeout",
                f"invalid request: the body did not arrive within {self.timeout:g} s",
            )
            return None
        except OSError:  # the connection was reset: nobody is left to answer
            logger.warning("a client of %s left before sending its body", self._source)
            return None
        if len(body) < length:
            self._refuse(
                HTTPStatus.BAD_REQUEST,
                "malformed",
                f"invalid request: the body ended after {len(body):,} of {length:,} bytes",
            )
            return None
        return body

    def _discard_body(self) -> None:
        """Read and drop a body that is not used, so that the client reads the answer.

        A client that is still sending when the server closes the connection gets a reset
        instead of the answer; this reads up to _DISCARD_LIMIT bytes, briefly.
        """
        if self._body_read:
            return
        self._body_read = True
        text = (self.headers.get("Content-Length") or "").strip()
        if not _CONTENT_LENGTH.fullmatch(text):
            return
        left = min(int(text), _DISCARD_LIMIT)
        try:
            self.connection.settimeout(_DISCARD_TIMEOUT_SECONDS)
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _bearer_token(self) -> str | None:
        """The bearer token presented; "" for an Authorization header of another kind."""
        values = self.headers.get_all("Authorization") or []
        if not values:
            return None
        scheme, _, token = values[0].strip().partition(" ")
        if len(values) > 1 or scheme.lower() != "bearer":
            return ""  # refused when it must vouch (an unsigned request); ignored otherwise
        return token.strip()

    # ------------------------------------------------------------------ logging
    def send_response(self, code: int, message: str | None = None) -> None:
        """Remember the status for the access log."""
        self._status = int(code)
        super().send_response(code, message)

    def log_error(self, format: str, *args: Any) -> None:
        """Not logged: its arguments may hold the request line; the status is logged."""

    def log_message(self, format: str, *args: Any) -> None:
        """The access log: method, path (no query) and status; never headers or the body."""
        path = urlsplit(getattr(self, "path", "") or "").path[:200] or "-"
        if not path.isprintable():
            path = repr(path)[1:-1]
        logger.info("%s %s %s", self.command or "-", path, self._status or "-")


class HttpIntake:
    """The HTTP intake of one inbox, served from a daemon thread.

    Construction starts nothing; :meth:`start` (or ``with``) binds and serves.

    Args:
        inbox: where accepted requests are recorded (and refusals).
        settings: the signing key, the bearer token and the time limits.
        host: interface to listen on; loopback by default.
        port: TCP port; 0 picks a free one (see :attr:`url` once started).
        on_accepted: called with the request id of each new request once it is recorded,
            before the answer (to wake a drain, say: keep it short); what it raises is
            logged, and the request is answered 202 all the same.
    """

    def __init__(
        self,
        inbox: Inbox,
        settings: Settings,
        host: str = "127.0.0.1",
        port: int = 0,
        on_accepted: Callable[[str], None] | None = None,
    ) -> None:
        self.inbox = inbox
        self.settings = settings
        self.host = host
        self.port = port
        self.on_accepted = on_accepted
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpIntake({self.url!r}, inbox={self.inbox!r})"

    @property
    def url(self) -> str:
        """The base URL (with the port picked by the system once started on port 0)."""
        server = self._server
        port = self.port if server is None else server.server_port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    @property
    def running(self) -> bool:
        """The server is serving."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> HttpIntake:
        """Bind and serve in a daemon thread (no-op when already serving).

        Raises:
            ConfigError: the address cannot be listened on (in use, not an address here).
        """
        with self._lock:
            if self._server is not None:
                return self
            try:
                server = _Server(self.host, self.port, self)
            except (OSError, OverflowError) as exc:  # OverflowError: a port past 65535
                detail = getattr(exc, "strerror", None) or exc
                raise ConfigError(
                    "the HTTP intake", [f"cannot listen on {self.host}:{self.port} ({detail})"]
                ) from exc
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"http-intake-{server.server_port}",
                daemon=True,
            )
            self._server, self._thread = server, thread
            thread.start()
        logger.info("HTTP intake listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (requests in flight finish on their own)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> HttpIntake:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _notify(self, request_id: str) -> None:
        callback = self.on_accepted
        if callback is None:
            return
        try:
            callback(request_id)
        except Exception:  # the request is recorded whatever the callback does
            _log_failure(f"on_accepted({request_id})")

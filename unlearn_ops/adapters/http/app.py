"""The HTTP intake's Starlette app: three routes, JSON in and out, every answer from an outcome.

::

    POST /v1/deletion-requests       body: one envelope (see :mod:`unlearn_ops.deletion.envelope`)
    GET  /v1/deletion-requests/{id}  the request's state and, once served, its receipt
    GET  /healthz                    {"status": "ok", "inbox": {"pending": 2, "rejected": 1}}

The status route answers only the producer that sent the request (a bearer token, or a
query signed with one of its keys: :mod:`unlearn_ops.adapters.http.auth`): 200 with
``{"request_id", "state", "received_at", "records", "outcome", "receipt"}``, 401 as for a
POST, 404 for a request of another producer exactly as for one that does not exist.

A request is vouched for by its HMAC signature, or, sent unsigned (no ``"signature"``),
by ``Authorization: Bearer <token>`` equal to `UNLEARN_OPS_REQUEST_BEARER_TOKEN`. The body
must come with a `Content-Length` of at most
:data:`~unlearn_ops.deletion.envelope.MAX_REQUEST_BYTES` (a chunked body is not read). The
answers, each from the outcome of :func:`~unlearn_ops.deletion.receive.receive`:

=====  ==========================================================================
202    ``{"request_id", "status": "new", "state"}``: recorded in the inbox (durable)
200    the same, with ``"status": "duplicate"``: seen before with the same content
400    ``malformed``: not JSON, wrong shape, a bad `Content-Length`
401    ``unsigned``, ``forged``, ``expired``, ``not-yet-valid``, ``unknown-key`` or
       ``bad-token`` (with ``WWW-Authenticate: Bearer``)
408    ``timeout``: the body did not arrive within the body timeout (10 s)
409    ``replayed-with-changes``: the request id arrived before with other content
411    ``length-required``; 413 ``too-large``
404    other paths; 405 other methods (with ``Allow``); 503 the inbox cannot be written
=====  ==========================================================================

A refusal is answered ``{"error": kind, "detail": message}`` and every refused delivery
(a POST to the intake path) is recorded in the inbox as ``http:<client address>``, with
its kind and message; a client that leaves before its whole body arrived is recorded as
``malformed`` too (there is nobody left to answer). Other paths and methods are not
deliveries: they are only logged (a port scanner does not fill the inbox). 202 (or 200) is
sent only after the inbox committed. The access log (logger `unlearn_ops.http_intake`)
holds the method, the path (without its query) and the status: never a header, the token
or the body. Requests that are not HTTP at all are answered 400 by the server (uvicorn)
before they reach the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import traceback
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from unlearn_ops.deletion.envelope import MAX_REQUEST_BYTES
from unlearn_ops.deletion.receive import (
    Accepted,
    Duplicate,
    Outcome,
    Refused,
    Replayed,
    receive,
    refuse,
)
from unlearn_ops.errors import UnauthenticatedRequestError, UnlearnOpsError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from unlearn_ops.deletion.inbox import Inbox
    from unlearn_ops.settings import Settings

__all__ = ["HEALTH_PATH", "INTAKE_PATH", "STATUS_PATH", "build_app"]

INTAKE_PATH = "/v1/deletion-requests"
STATUS_PATH = INTAKE_PATH + "/{request_id}"
HEALTH_PATH = "/healthz"
ALLOWED = {INTAKE_PATH: "POST", HEALTH_PATH: "GET"}

logger = logging.getLogger("unlearn_ops.http_intake")

_O = TypeVar("_O", bound=Outcome)
_CHALLENGE = 'Bearer realm="unlearn-ops"'
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")
# A client that did not send what it declared gets no second request on the connection.
_CLOSE = {"Connection": "close"}
# A refused body up to this size is read and dropped by the server after the answer, so
# that a client still sending reads the answer (not a reset); a larger one ends the
# connection instead.
_DISCARD_LIMIT = 16 * MAX_REQUEST_BYTES


def log_failure(what: str) -> None:
    """Log the exception being handled by its type and frames: its message may quote input."""
    exc_type, _, tb = sys.exc_info()
    name = "unknown" if exc_type is None else exc_type.__name__
    logger.error("%s failed with %s:\n%s", what, name, "".join(traceback.format_tb(tb)))


def _json(
    status: int, payload: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(payload, sort_keys=True).encode(),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _answer(outcome: Outcome) -> Response:
    """The HTTP answer to an outcome of `receive`."""
    if isinstance(outcome, Accepted | Duplicate):
        status = HTTPStatus.ACCEPTED if isinstance(outcome, Accepted) else HTTPStatus.OK
        body = {
            "request_id": outcome.request_id,
            "status": "new" if isinstance(outcome, Accepted) else "duplicate",
            "state": outcome.state,
        }
        return _json(status, body)
    refusal = {"error": outcome.kind, "detail": outcome.message}
    if isinstance(outcome, Replayed):
        return _json(HTTPStatus.CONFLICT, refusal)
    if outcome.kind == "malformed":
        return _json(HTTPStatus.BAD_REQUEST, refusal)
    return _json(HTTPStatus.UNAUTHORIZED, refusal, {"WWW-Authenticate": _CHALLENGE})


def _unavailable() -> Response:
    return _json(
        HTTPStatus.SERVICE_UNAVAILABLE,
        {"error": "unavailable", "detail": "the inbox cannot record requests now; retry"},
        {"Retry-After": "30"},
    )


def _bearer_token(request: Request) -> str | None:
    """The bearer token presented; "" for an Authorization header of another kind."""
    values = request.headers.getlist("authorization")
    if not values:
        return None
    scheme, _, token = values[0].strip().partition(" ")
    if len(values) > 1 or scheme.lower() != "bearer":
        return ""  # refused when it must vouch (an unsigned request); ignored otherwise
    return token.strip()


def _length_problem(request: Request) -> tuple[int, str, str] | None:
    """(status, kind, message) when the declared body cannot be read; None when it can."""
    if "transfer-encoding" in request.headers:
        return (
            HTTPStatus.LENGTH_REQUIRED,
            "length-required",
            "send the body with a Content-Length (chunked bodies are not read)",
        )
    values = {value.strip() for value in request.headers.getlist("content-length")}
    if not values:
        return HTTPStatus.LENGTH_REQUIRED, "length-required", "send a Content-Length header"
    text = next(iter(values))
    if len(values) > 1 or not _CONTENT_LENGTH.fullmatch(text):
        return (
            HTTPStatus.BAD_REQUEST,
            "malformed",
            "invalid request: Content-Length is not one number of bytes",
        )
    if int(text) > MAX_REQUEST_BYTES:
        return (
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "too-large",
            f"invalid request: {int(text):,} bytes, more than the {MAX_REQUEST_BYTES:,} allowed",
        )
    return None


def build_app(
    inbox: Inbox,
    settings: Settings,
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
    body_timeout: float = 10.0,
    receipt_for: Callable[[str], Mapping[str, object]] | None = None,
) -> Starlette:
    """The intake as an ASGI app (serve it with uvicorn, or call it in-process with httpx).

    Args:
        inbox: where requests and refusals are recorded.
        settings: the signing key, the bearer token and the time limits.
        on_outcome: called with every delivery's outcome once it is recorded, before the
            answer, in a worker thread (keep it short); what it raises is logged.
        body_timeout: seconds a declared body may take to arrive (408 after).
        receipt_for: the signed receipt of a served request (in a worker thread), for
            the status route; None: the status carries no receipt.
    """

    def recorded(outcome: _O) -> _O:
        if on_outcome is not None:
            try:
                on_outcome(outcome)
            except Exception:  # the delivery is recorded whatever the callback does
                log_failure(f"on_outcome({type(outcome).__name__})")
        return outcome

    async def refused(
        source: str, status: int, kind: str, message: str, headers: Mapping[str, str]
    ) -> Response:
        """Record a refusal made before there was an envelope to verify, then answer."""
        try:
            outcome = await run_in_threadpool(
                lambda: recorded(refuse(inbox, Refused(kind, message), source=source))
            )
            message = outcome.message
        except UnlearnOpsError as exc:
            logger.error("could not record a refused delivery: %s", exc)
        return _json(status, {"error": kind, "detail": message}, headers)

    async def post(request: Request) -> Response:
        source = f"http:{request.client.host if request.client else '-'}"
        problem = _length_problem(request)
        if problem is not None:
            status, kind, message = problem
            # Too large: the server drops the body after the answer (keep-alive); the others
            # did not say where their body ends, so the connection ends with the answer.
            declared = int(request.headers["content-length"]) if kind == "too-large" else 0
            headers = {} if 0 < declared <= _DISCARD_LIMIT else _CLOSE
            return await refused(source, status, kind, message, headers)
        length = int(request.headers["content-length"])
        body = bytearray()

        async def read() -> None:
            async for chunk in request.stream():
                body.extend(chunk)

        try:
            await asyncio.wait_for(read(), body_timeout)
        except TimeoutError:
            message = f"invalid request: the body did not arrive within {body_timeout:g} s"
            return await refused(source, HTTPStatus.REQUEST_TIMEOUT, "timeout", message, _CLOSE)
        except ClientDisconnect:
            message = f"invalid request: the body ended after {len(body):,} of {length:,} bytes"
            return await refused(source, HTTPStatus.BAD_REQUEST, "malformed", message, _CLOSE)
        token = _bearer_token(request)
        try:
            outcome = await run_in_threadpool(
                lambda: recorded(
                    receive(
                        inbox, bytes(body), source=source, bearer_token=token, settings=settings
                    )
                )
            )
        except UnlearnOpsError as exc:  # the inbox cannot be written: the producer retries
            logger.error("the inbox refused a request: %s", exc)
            return _unavailable()
        return _answer(outcome)

    def status_of(request_id: str, producer: str) -> Response:
        from unlearn_ops.adapters.http.auth import request_owner

        entry = inbox.get(request_id)
        if entry is None or request_owner(entry, settings) != producer:
            # The same answer whether it does not exist or is another producer's.
            detail = "no request with this id was received from you"
            return _json(HTTPStatus.NOT_FOUND, {"error": "not-found", "detail": detail})
        body: dict[str, object] = {
            "request_id": entry.request_id,
            "state": entry.state,
            "received_at": entry.received_at,
            "records": len(entry.record_hashes),
            "outcome": entry.outcome,
            "receipt": None,
        }
        if entry.state == "done" and receipt_for is not None:
            try:
                body["receipt"] = dict(receipt_for(request_id))
            except UnlearnOpsError as exc:  # not served by a version yet, no receipt key
                body["receipt_error"] = str(exc)
        return _json(HTTPStatus.OK, body)

    async def status(request: Request) -> Response:
        from unlearn_ops.adapters.http.auth import query_producer

        path = request.url.path
        headers = dict(request.headers)
        token = _bearer_token(request)
        try:
            producer = await run_in_threadpool(
                lambda: query_producer("GET", path, headers, token, settings)
            )
        except UnauthenticatedRequestError as exc:
            logger.warning("refused a status query (%s)", exc.kind)
            refusal = {"error": exc.kind, "detail": str(exc)}
            return _json(HTTPStatus.UNAUTHORIZED, refusal, {"WWW-Authenticate": _CHALLENGE})
        request_id = str(request.path_params["request_id"])
        try:
            return await run_in_threadpool(lambda: status_of(request_id, producer))
        except UnlearnOpsError as exc:
            logger.error("status query: %s", exc)
            return _unavailable()

    async def health(request: Request) -> Response:
        try:
            counts = await run_in_threadpool(inbox.counts)
        except UnlearnOpsError as exc:
            logger.error("health check: %s", exc)
            return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable"})
        return _json(HTTPStatus.OK, {"status": "ok", "inbox": counts})

    async def not_here(request: Request, exc: Exception) -> Response:
        path = request.url.path
        allowed = ALLOWED.get(path)
        if allowed is None and path.startswith(INTAKE_PATH + "/") and path.count("/") == 3:
            allowed = "GET"  # a request's status
        if allowed is None or not isinstance(exc, HTTPException) or exc.status_code != 405:
            return _json(
                HTTPStatus.NOT_FOUND,
                {"error": "not-found", "detail": f"POST requests to {INTAKE_PATH}"},
            )
        return _json(
            HTTPStatus.METHOD_NOT_ALLOWED,
            {"error": "method-not-allowed", "detail": f"{path} answers {allowed} only"},
            {"Allow": allowed},
        )

    app = Starlette(
        routes=[
            Route(INTAKE_PATH, _guarded(post), methods=["POST"]),
            Route(STATUS_PATH, _guarded(status), methods=["GET"]),
            Route(HEALTH_PATH, _guarded(health), methods=["GET"]),
        ],
        exception_handlers={HTTPException: not_here},
    )
    app.router.redirect_slashes = False  # "/v1/deletion-requests/" is another path: 404
    app.add_middleware(_AccessLog)
    return app


def _guarded(
    route: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """A route whose failures are logged by frames (never the message) and answered 500."""

    async def guarded(request: Request) -> Response:
        try:
            return await route(request)
        except Exception:
            log_failure(f"{request.method} {request.url.path}")
            return _json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "internal-error", "detail": "the intake failed; retry later"},
                _CLOSE,
            )

    return guarded


class _AccessLog:
    """The access log: method, path (no query) and status, when the status is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path") or "-")[:200]
        if not path.isprintable():
            path = repr(path)[1:-1]
        method = str(scope.get("method") or "-")[:20]

        async def logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                logger.info("%s %s %s", method, path, message["status"])
            await send(message)

        await self.app(scope, receive, logged)

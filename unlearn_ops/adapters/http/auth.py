"""Who asks about a request on the HTTP intake: a bearer token, or a query signed with a key.

A producer asks ``GET /v1/deletion-requests/{request_id}`` about a request it sent, vouched
for like its requests: ``Authorization: Bearer <token>`` (the producer `bearer`), or three
headers made by :func:`sign_query` with one of its keys (:mod:`unlearn_ops.deletion.keys`)::

    X-Unlearn-Key-Id:     crm-2026-11
    X-Unlearn-Signed-At:  2026-11-20T09:31:02+00:00
    X-Unlearn-Signature:  HMAC-SHA256 over {"key_id","method","path","signed_at"} (canonical)

The signing time must lie within `UNLEARN_OPS_REQUEST_CLOCK_SKEW_SECONDS` of the server's
clock; the key must be usable now (not revoked, not expired). Messages never carry a
secret, a token or a signature.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from unlearn_ops.canonical import canonical_json
from unlearn_ops.deletion.keys import (
    BEARER_PRODUCER,
    SigningKey,
    check_bearer_token,
    load_key_ring,
)
from unlearn_ops.errors import UnauthenticatedRequestError

if TYPE_CHECKING:
    from unlearn_ops.deletion.inbox import InboxEntry
    from unlearn_ops.settings import Settings

__all__ = ["query_producer", "request_owner", "sign_query", "verify_query"]

KEY_ID_HEADER = "X-Unlearn-Key-Id"
SIGNED_AT_HEADER = "X-Unlearn-Signed-At"
SIGNATURE_HEADER = "X-Unlearn-Signature"


def _query_text(method: str, path: str, key_id: str, signed_at: str) -> bytes:
    return canonical_json(
        {"key_id": key_id, "method": method.upper(), "path": path, "signed_at": signed_at}
    )


def sign_query(
    method: str, path: str, key: SigningKey, signed_at: datetime | None = None
) -> dict[str, str]:
    """The headers that vouch for a status query.

    Example::

        ring = load_key_ring(settings)
        path = "/v1/deletion-requests/dsr-1"
        httpx.get(url + path, headers=sign_query("GET", path, ring.keys["crm-2026-11"]))
    """
    at = (signed_at or datetime.now(UTC)).astimezone(UTC).isoformat()
    return {
        KEY_ID_HEADER: key.key_id,
        SIGNED_AT_HEADER: at,
        SIGNATURE_HEADER: key.mac(_query_text(method, path, key.key_id, at)),
    }


def verify_query(
    method: str,
    path: str,
    headers: Mapping[str, str],
    settings: Settings,
    now: datetime | None = None,
) -> SigningKey:
    """The key that signed a status query, checked like a request's.

    Raises:
        UnauthenticatedRequestError: unsigned, unknown key, forged, not signed just now,
            or a key that may not be used now (`revoked-key`, `expired-key`, ...).
        ConfigError: the key file is invalid.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    key_id = lowered.get(KEY_ID_HEADER.lower())
    signed_at = lowered.get(SIGNED_AT_HEADER.lower())
    value = lowered.get(SIGNATURE_HEADER.lower())
    if not key_id or not signed_at or not value:
        raise UnauthenticatedRequestError(
            "unsigned",
            f"send {KEY_ID_HEADER}, {SIGNED_AT_HEADER} and {SIGNATURE_HEADER}, or a bearer token",
        )
    ring = load_key_ring(settings)
    key = ring.get(key_id)
    if key is None:
        raise UnauthenticatedRequestError("unknown-key", "the key id is not known here")
    expected = key.mac(_query_text(method, path, key_id, signed_at))
    if not hmac.compare_digest(expected.encode(), value.encode("utf-8", "surrogatepass")):
        raise UnauthenticatedRequestError("forged", "the signature does not match the query")
    moment = now or datetime.now(UTC)
    try:
        at = datetime.fromisoformat(signed_at)
    except ValueError as exc:
        raise UnauthenticatedRequestError("forged", f"{SIGNED_AT_HEADER} is not a time") from exc
    skew = timedelta(seconds=settings.request_clock_skew_seconds)
    if at.tzinfo is None or abs(moment - at) > skew:
        raise UnauthenticatedRequestError(
            "expired", "the query was not signed just now; check the producer's clock"
        )
    return ring.check(key, moment)


def query_producer(
    method: str,
    path: str,
    headers: Mapping[str, str],
    bearer_token: str | None,
    settings: Settings,
) -> str:
    """The producer asking: the bearer token's, or the signing key's.

    Raises:
        UnauthenticatedRequestError: neither vouches.
    """
    if bearer_token is not None:
        return check_bearer_token(bearer_token, settings)
    return verify_query(method, path, headers, settings).producer


def request_owner(entry: InboxEntry, settings: Settings) -> str | None:
    """The producer that sent a request (for requests received before producers were
    recorded: the holder of the key that signed it, if that key is still configured)."""
    if entry.producer is not None:
        return entry.producer
    if entry.authenticated_by == "bearer":
        return BEARER_PRODUCER
    return None if entry.key_id is None else load_key_ring(settings).producer_of(entry.key_id)

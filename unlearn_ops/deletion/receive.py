"""The one receive path: verify a delivered envelope, record it or its refusal, say what happened.

Every intake (the S3/SQS listener, the HTTP endpoint, Prefect events and queued runs) calls
:func:`receive` and turns its typed outcome into its own answer (an SQS delete and a
``rejected/`` file, an HTTP status, a count in a flow's result)::

    Accepted     recorded in the inbox now (durable when `receive` returns)
    Duplicate    the inbox held this request already, with the same content
    Refused      not verified: `kind` (`malformed`, `forged`, `expired`, ...) and a one-line
                 `message`; recorded in the inbox's refusals
    Replayed     the request id arrived before with other content (`replayed-with-changes`);
                 the first request stands

A transport that names its deliveries (``s3://bucket/key#etag``, ``prefect-event:<id>``)
passes `delivery_id`: a delivery seen before is judged again but recorded only once, so a
retry after a crash (or the same event read twice) changes nothing in the inbox. Failures
of the inbox itself (:class:`~unlearn_ops.errors.StoreError`) are raised, not outcomes: the
transport keeps the delivery for a later try.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from unlearn_ops.deletion.requests import REQUEST_ID_PATTERN
from unlearn_ops.errors import (
    InvalidRequestError,
    ReplayedRequestError,
    UnauthenticatedRequestError,
)

if TYPE_CHECKING:
    from unlearn_ops.deletion.inbox import Inbox
    from unlearn_ops.settings import Settings

__all__ = [
    "Accepted",
    "Duplicate",
    "Outcome",
    "ReceiveCounts",
    "ReceiveTally",
    "Refused",
    "Replayed",
    "claimed_request_id",
    "receive",
    "refuse",
]

logger = logging.getLogger("unlearn_ops.deletion.receive")

State = Literal["pending", "processing", "done", "failed", "held"]


@dataclass(frozen=True)
class Accepted:
    """Recorded in the inbox now, as `pending`."""

    request_id: str
    state: State = "pending"


@dataclass(frozen=True)
class Duplicate:
    """The inbox held the request already with the same content; `state` is where it is."""

    request_id: str
    state: State


@dataclass(frozen=True)
class Refused:
    """Not verified (or not read): the refusal's `kind` and a one-line `message`.

    `request_id` is the id the delivery claims, if it reads as one (for the operator only).
    """

    kind: str
    message: str
    request_id: str | None = None


@dataclass(frozen=True)
class Replayed:
    """The request id arrived before with other content; the first request stands."""

    request_id: str
    message: str
    kind: str = ReplayedRequestError.kind


Outcome = Accepted | Duplicate | Refused | Replayed


def _one_line(text: str, limit: int = 1000) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else f"{line[: limit - 3]}..."


def claimed_request_id(envelope: object) -> str | None:
    """The request id an envelope claims, if it reads as one; never raises."""
    value: object = envelope
    if isinstance(envelope, bytes | str):
        value = None
        with contextlib.suppress(ValueError, RecursionError):
            value = json.loads(envelope)
    request = value.get("request") if isinstance(value, Mapping) else None
    request_id = request.get("request_id") if isinstance(request, Mapping) else None
    if (
        isinstance(request_id, str)
        and len(request_id) <= 128
        and re.fullmatch(REQUEST_ID_PATTERN, request_id)
    ):
        return request_id
    return None


def refuse(
    inbox: Inbox, refusal: Refused, *, source: str, delivery_id: str | None = None
) -> Refused:
    """Record a refused delivery (once per `delivery_id`); the outcome, its message one line.

    Also for refusals that an intake makes before there is an envelope to verify (a body
    over the size limit, a missing `Content-Length`, a notification that is not one).
    """
    refusal = replace(refusal, message=_one_line(refusal.message))
    if delivery_id is None or not inbox.seen_delivery(delivery_id):
        inbox.reject(source, refusal.kind, refusal.message, refusal.request_id, delivery_id)
        logger.warning("refused a deletion request from %s (%s)", source, refusal.kind)
    return refusal


def receive(
    inbox: Inbox,
    envelope: object,
    *,
    source: str,
    delivery_id: str | None = None,
    bearer_token: str | None = None,
    settings: Settings | None = None,
) -> Outcome:
    """Verify an envelope and record it in the inbox, or record its refusal.

    Args:
        inbox: where requests and refusals are recorded.
        envelope: the delivery as received (bytes, text or a parsed JSON object).
        source: where it came from (``s3://bucket/key``, ``http:<client>``, ...).
        delivery_id: the transport's id of this delivery, if it has one: a delivery seen
            before is recorded once, however often it is received.
        bearer_token: the token presented with it (HTTP), which may vouch for an unsigned
            envelope.
        settings: the signing key, bearer token and time limits to verify with (the
            inbox's settings by default).

    Returns:
        :class:`Accepted`, :class:`Duplicate`, :class:`Refused` or :class:`Replayed`.

    Raises:
        StoreError: the inbox cannot be read or written (nothing was recorded).
    """
    from unlearn_ops.deletion.envelope import verify_request

    try:
        if not isinstance(envelope, Mapping | str | bytes):
            raise InvalidRequestError(
                f"a request must be a JSON object, got {type(envelope).__name__}"
            )
        verified = verify_request(envelope, settings or inbox.settings, bearer_token=bearer_token)
    except (InvalidRequestError, UnauthenticatedRequestError) as exc:
        refusal = Refused(exc.kind, str(exc), claimed_request_id(envelope))
        return refuse(inbox, refusal, source=source, delivery_id=delivery_id)
    if delivery_id is not None and inbox.seen_delivery(delivery_id):
        # The same delivery again (a retry, an event read twice): judged, not recorded.
        known = inbox.get(verified.request_id)
        if known is not None:
            if known.fingerprint != verified.fingerprint(inbox.settings):
                return Replayed(verified.request_id, str(ReplayedRequestError(known.request_id)))
            return Duplicate(known.request_id, known.state)
    try:
        accepted = inbox.accept(verified, source, delivery_id)
    except ReplayedRequestError as exc:  # accept() recorded the refusal itself
        logger.warning("refused a deletion request from %s (%s)", source, exc.kind)
        return Replayed(verified.request_id, str(exc))
    if accepted.status == "new":
        return Accepted(accepted.request_id, accepted.state)
    return Duplicate(accepted.request_id, accepted.state)


@dataclass
class ReceiveCounts:
    """Outcomes counted: what a summary says an intake received.

    Attributes:
        accepted: requests recorded as new.
        duplicates: requests the inbox held already.
        refused: deliveries refused, replays with changes included.
    """

    accepted: int = 0
    duplicates: int = 0
    refused: int = 0

    def add(self, outcome: Outcome) -> None:
        """Count one outcome."""
        if isinstance(outcome, Accepted):
            self.accepted += 1
        elif isinstance(outcome, Duplicate):
            self.duplicates += 1
        else:
            self.refused += 1

    def __add__(self, other: ReceiveCounts) -> ReceiveCounts:
        if not isinstance(other, ReceiveCounts):
            return NotImplemented
        return ReceiveCounts(
            self.accepted + other.accepted,
            self.duplicates + other.duplicates,
            self.refused + other.refused,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


class ReceiveTally:
    """:class:`ReceiveCounts` that many threads add to (an HTTP server's handlers)."""

    def __init__(self) -> None:
        self._counts = ReceiveCounts()
        self._lock = threading.Lock()

    def add(self, outcome: Outcome) -> None:
        """Count one outcome."""
        with self._lock:
            self._counts.add(outcome)

    def counts(self) -> ReceiveCounts:
        """A copy of the counts so far."""
        with self._lock:
            return ReceiveCounts(**asdict(self._counts))

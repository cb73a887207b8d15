"""Signed deletion requests: the wire format that privacy systems send, and its checks.

A request file, an event payload or an HTTP body is one JSON object::

    {
      "version": 1,
      "request": {
        "request_id": "dsr-2026-0042",           # the idempotency key
        "record_ids": ["17", "4711"],             # or "subject_id": "customer-981",
                                                  # or "client_id": "hospital-3"
        "reason": "GDPR art. 17",
        "requested_at": "2026-11-20T09:30:00Z",
        "expires_at": null                        # optional: refuse after this time
      },
      "signature": {
        "algorithm": "hmac-sha256",
        "key_id": "default",
        "signed_at": "2026-11-20T09:31:02Z",
        "value": "<64 hex digits>"
      }
    }

The signature is HMAC-SHA256, keyed by the secret of the key `key_id` (the key ``default``
is `UNLEARN_OPS_REQUEST_SIGNING_KEY`; producers' own keys come from a key file, see
:mod:`unlearn_ops.deletion.keys`), over the canonical JSON (keys sorted, no whitespace,
UTF-8) of ``{"algorithm", "key_id", "request", "signed_at", "version"}`` (and
``"producer"`` when the signature names one) exactly as sent: any change to the request or
to the signing time breaks it. On the HTTP intake a bearer token
(`UNLEARN_OPS_REQUEST_BEARER_TOKEN`) may stand in for the signature.

Checks, in order, each with its own error: size, JSON (no duplicate keys, no NaN), shape
(pydantic, strict), authentication (unsigned, unknown key, forged; then the key's state),
time (signature too old or from the future, request past its `expires_at`).

A request that names a `client_id` instead is a federation member's withdrawal (issue 13,
:mod:`unlearn_ops.workflow.federated`); record and subject requests, their signatures and
fingerprints are unchanged.

Why this module is long: the wire format, its parsing and its checks are one contract that
a producer reads in one place; splitting the checks from the shapes would scatter it. A replay with
changes (same id, other content) is caught where requests are recorded, by their
:meth:`VerifiedRequest.fingerprint`. Errors never carry a secret, a token or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from unlearn_ops.canonical import canonical_json
from unlearn_ops.deletion.keys import KEY_ID_PATTERN, KeyRing, check_bearer_token, load_key_ring
from unlearn_ops.deletion.requests import (
    MAX_RECORDS_PER_REQUEST,
    ForgetRequest,
    RequestId,
    canonical_record_ids,
)
from unlearn_ops.errors import InvalidRequestError, UnauthenticatedRequestError
from unlearn_ops.settings import Settings

__all__ = [
    "ALGORITHM",
    "MAX_REQUEST_BYTES",
    "RequestBody",
    "SignedRequest",
    "VerifiedRequest",
    "canonical_json",
    "parse_envelope",
    "parse_json_object",
    "sign_request",
    "verify_request",
]

ALGORITHM = "hmac-sha256"
MAX_REQUEST_BYTES = 1024 * 1024
MAX_ID_LENGTH = 256


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):  # linear: a 1 MiB object may hold 100,000 keys
        # Two parsers could read two different requests from one signed text.
        counts = Counter(key for key, _ in pairs)
        duplicated = sorted(key for key, count in counts.items() if count > 1)
        shown = ", ".join(repr(key[:64]) for key in duplicated[:5])
        more = f" (and {len(duplicated) - 5} more)" if len(duplicated) > 5 else ""
        raise InvalidRequestError(f"duplicate key(s) {shown}{more}")
    return value


def _no_constant(name: str) -> None:
    raise InvalidRequestError(f"{name} is not valid JSON")


def parse_json_object(data: bytes | str, limit: int = MAX_REQUEST_BYTES) -> dict[str, Any]:
    """Parse a request text strictly: at most `limit` bytes, one JSON object.

    Raises:
        InvalidRequestError: too large, not UTF-8, not JSON, duplicate keys, not an object.
    """
    # Lone surrogates in a str are passed through, to be refused as "not UTF-8" below.
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > limit:
        raise InvalidRequestError(f"{len(raw):,} bytes, more than the {limit:,} allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"not UTF-8 text (byte {exc.start})") from exc
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
    except InvalidRequestError:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"not JSON ({exc.msg} at line {exc.lineno})") from exc
    except RecursionError as exc:
        raise InvalidRequestError("JSON nested too deeply") from exc
    except ValueError as exc:  # an integer of more than 4,300 digits (sys.int_info)
        raise InvalidRequestError("not JSON (a number too long to read)") from exc
    if not isinstance(value, dict):
        raise InvalidRequestError(f"a request must be a JSON object, got {type(value).__name__}")
    return value


class RequestBody(BaseModel):
    """What is asked: forget these records (or this subject's records), for this reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: RequestId
    record_ids: tuple[str, ...] | None = Field(
        None, min_length=1, max_length=MAX_RECORDS_PER_REQUEST
    )
    subject_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    client_id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH)
    reason: str = Field(min_length=1, max_length=500)
    requested_at: AwareDatetime
    expires_at: AwareDatetime | None = None

    @field_validator("record_ids", mode="before")
    @classmethod
    def _canonical_ids(cls, value: object) -> object:
        if isinstance(value, list | tuple):  # a mapping may hold a tuple
            return canonical_record_ids(value, max_length=MAX_ID_LENGTH)
        return value

    @model_validator(mode="after")
    def _records_or_subject(self) -> RequestBody:
        if self.client_id is not None:  # a withdrawal (issue 13) names the client alone
            if self.record_ids is not None or self.subject_id is not None:
                raise ValueError("a client_id request names no record_ids and no subject_id")
        elif (self.record_ids is None) == (self.subject_id is None):
            raise ValueError("give exactly one of record_ids and subject_id (or a client_id)")
        return self


class Signature(BaseModel):
    """Who vouches for the request, and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: Literal["hmac-sha256"]
    key_id: str = Field("default", pattern=KEY_ID_PATTERN)
    producer: str | None = Field(None, pattern=KEY_ID_PATTERN)  # signed when given
    signed_at: AwareDatetime
    value: str = Field(pattern=r"^[0-9a-f]{64}$")


class SignedRequest(BaseModel):
    """The whole envelope: a request and (unless a bearer token vouches) its signature."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1]
    request: RequestBody
    signature: Signature | None = None


@dataclass(frozen=True)
class VerifiedRequest:
    """A request that passed every check. Holds record ids in memory only.

    Attributes:
        body: the validated request.
        authenticated_by: `hmac:<key id>` or `bearer`.
        signed_at: when it was signed (None for a bearer token).
        producer: the producing system that vouched for it (`bearer` for the token).
        key_id: the id of the key that signed it (None for a bearer token).
    """

    body: RequestBody
    authenticated_by: str
    signed_at: datetime | None = None
    producer: str | None = None
    key_id: str | None = None

    @property
    def request_id(self) -> str:
        """The idempotency key."""
        return self.body.request_id

    def record_hashes(self, settings: Settings) -> list[str]:
        """Keyed hashes of the record ids (empty for a subject request), sorted."""
        return sorted({settings.hash_record_id(r) for r in self.body.record_ids or ()})

    def subject_hash(self, settings: Settings) -> str | None:
        """Keyed hash of the subject id, if the request names a subject."""
        subject = self.body.subject_id
        return None if subject is None else settings.hash_subject_id(subject)

    def client_hash(self, settings: Settings) -> str | None:
        """Keyed hash of the client id (`client:<id>`), if the request withdraws a client.

        The same hash as :func:`unlearn_ops.federated.groups.hash_client_id`.
        """
        client = self.body.client_id
        return None if client is None else settings.hash_record_id(f"client:{client}")

    def fingerprint(self, settings: Settings) -> str:
        """SHA-256 of what the request asks (ids as keyed hashes): equal for duplicates.

        Two deliveries of one request have the same fingerprint whoever signed them and
        when; a replay with changed records, subject, reason or dates does not.
        """
        body = self.body
        asked: dict[str, object] = {
            "request_id": body.request_id,
            "record_hashes": self.record_hashes(settings),
            "subject_hash": self.subject_hash(settings),
            "reason": body.reason,
            "requested_at": body.requested_at.astimezone(UTC).isoformat(),
            "expires_at": (
                None if body.expires_at is None else body.expires_at.astimezone(UTC).isoformat()
            ),
        }
        if body.client_id is not None:  # absent otherwise: earlier fingerprints unchanged
            asked["client_hash"] = self.client_hash(settings)
        return hashlib.sha256(canonical_json(asked)).hexdigest()

    def to_forget_request(self) -> ForgetRequest:
        """The request as the forget pipeline takes it (record ids must be given)."""
        if self.body.record_ids is None:
            named = "a client" if self.body.client_id is not None else "a subject"
            raise InvalidRequestError(
                f"request {self.request_id} names {named}, not records",
                "resolve the subject through the workspace first",
            )
        return ForgetRequest(
            request_id=self.body.request_id,
            record_ids=self.body.record_ids,
            reason=self.body.reason,
            requested_at=self.body.requested_at,
            signed_by=self.authenticated_by,
        )


def _signed_text(raw_request: object, signature: Mapping[str, Any], version: object) -> bytes:
    signed = {
        "algorithm": signature.get("algorithm", ALGORITHM),
        "key_id": signature.get("key_id", "default"),
        "request": raw_request,
        "signed_at": signature.get("signed_at"),
        "version": version,
    }
    if "producer" in signature:  # absent from envelopes of before producers: unchanged
        signed["producer"] = signature["producer"]
    return canonical_json(signed)


def _mac(key: str | bytes, text: bytes) -> str:
    return hmac.new(key.encode() if isinstance(key, str) else key, text, "sha256").hexdigest()


def sign_request(
    request: Mapping[str, Any],
    key: str | bytes,
    *,
    key_id: str = "default",
    signed_at: datetime | None = None,
    producer: str | None = None,
) -> dict[str, Any]:
    """Wrap a request (a JSON-ready mapping) in a signed envelope.

    `producer`, when given, is signed with it: the intake then refuses the envelope if
    `key_id` is not a key of that producer (`foreign-key`).

    Example:
        >>> envelope = sign_request(
        ...     {"request_id": "r1", "record_ids": ["7"], "reason": "GDPR art. 17",
        ...      "requested_at": "2026-11-20T09:30:00+00:00"},
        ...     "shared-secret",
        ... )
        >>> envelope["signature"]["algorithm"]
        'hmac-sha256'
    """
    at = (signed_at or datetime.now(UTC)).astimezone(UTC).isoformat()
    raw = json.loads(canonical_json(dict(request)))  # JSON-ready, as it will be read back
    meta = {"algorithm": ALGORITHM, "key_id": key_id, "signed_at": at}
    if producer is not None:
        meta["producer"] = producer
    value = _mac(key, _signed_text(raw, meta, 1))
    return {"version": 1, "request": raw, "signature": {**meta, "value": value}}


def _location(loc: tuple[int | str, ...]) -> str:
    # Keys come from the sender: shortened, and escaped so that a message stays one line.
    text = ".".join(str(part)[:64] for part in loc) or "request"
    return text if text.isprintable() else repr(text)[1:-1]


def parse_envelope(data: bytes | str | Mapping[str, Any]) -> SignedRequest:
    """The envelope's shape checked, without its signature (what a producer can check).

    Raises:
        InvalidRequestError: too large or malformed.
    """
    raw = parse_json_object(data) if isinstance(data, bytes | str) else dict(data)
    try:
        return SignedRequest.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(f"{_location(err['loc'])}: {err['msg']}" for err in errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise InvalidRequestError(problems + more) from exc


def _check_times(envelope: SignedRequest, settings: Settings, now: datetime) -> None:
    signature = envelope.signature
    if signature is not None:
        if signature.signed_at - now > timedelta(seconds=settings.request_clock_skew_seconds):
            raise UnauthenticatedRequestError(
                "not-yet-valid", "signed in the future; check the producer's clock"
            )
        if now - signature.signed_at > timedelta(seconds=settings.request_max_age_seconds):
            raise UnauthenticatedRequestError(
                "expired",
                f"signed more than {settings.request_max_age_seconds} s ago; sign it again",
            )
    expires_at = envelope.request.expires_at
    if expires_at is not None and now > expires_at:
        raise UnauthenticatedRequestError("expired", "past its expires_at; send a new request")


def verify_request(
    data: bytes | str | Mapping[str, Any],
    settings: Settings,
    *,
    bearer_token: str | None = None,
    now: datetime | None = None,
    keys: KeyRing | None = None,
) -> VerifiedRequest:
    """Check a request envelope end to end; what passes may be acted on.

    Args:
        data: the envelope as received (bytes or text are parsed strictly).
        settings: holds the signing key, the bearer token and the time limits.
        bearer_token: the token presented on the HTTP intake, if any; it vouches for an
            unsigned envelope when it equals `UNLEARN_OPS_REQUEST_BEARER_TOKEN`.
        now: the time to check against (the current time by default).
        keys: the producers' keys (read from the settings now by default).

    Raises:
        InvalidRequestError: too large or malformed.
        UnauthenticatedRequestError: unsigned, unknown key, forged, expired, bad token,
            `revoked-key`, `expired-key`, `not-yet-valid-key`, `foreign-key`.
        ConfigError: the key file is invalid (nothing about the request is judged).
    """
    moment = now or datetime.now(UTC)
    raw = parse_json_object(data) if isinstance(data, bytes | str) else dict(data)
    envelope = parse_envelope(raw)
    signature = envelope.signature
    if signature is None:
        if bearer_token is None:
            raise UnauthenticatedRequestError("unsigned", "sign the request (see envelope docs)")
        check_bearer_token(bearer_token, settings)
        _check_times(envelope, settings, moment)
        return VerifiedRequest(envelope.request, "bearer", producer="bearer")
    ring = load_key_ring(settings) if keys is None else keys
    key = ring.get(signature.key_id)
    if key is None:
        raise UnauthenticatedRequestError(
            "unknown-key",
            f"key id {signature.key_id!r} is not known here"
            if ring.keys
            else "no signing key is configured here (UNLEARN_OPS_REQUEST_SIGNING_KEY or "
            "UNLEARN_OPS_REQUEST_KEYS_FILE)",
        )
    if not hmac.compare_digest(
        key.mac(_signed_text(raw["request"], raw["signature"], 1)), signature.value
    ):
        raise UnauthenticatedRequestError(
            "forged", "the signature does not match the request (changed, or another key)"
        )
    # Only a signature that matches speaks for the key: its state is told to its holder.
    ring.check(key, moment, signature.producer)
    _check_times(envelope, settings, moment)
    return VerifiedRequest(
        envelope.request,
        f"hmac:{key.key_id}",
        signature.signed_at,
        producer=key.producer,
        key_id=key.key_id,
    )

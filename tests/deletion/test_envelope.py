"""Signed deletion requests: the wire format, its checks in order, and what a refusal says.

Good envelopes verify whatever their JSON layout; hypothesis then generates many bad ones
in families (forged, unsigned, another key, unknown key id, oversized, malformed, expired,
from the future, bearer-token mistakes) and feeds each through `intake`, the way every
intake does it (verify, then accept; record a refusal). Each must be refused with the
right error and kind, in one line that names no secret and no record id, and must change
nothing in the inbox but one more rejection.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from tests.conftest import intake_settings
from unlearn_ops.deletion.envelope import (
    ALGORITHM,
    MAX_REQUEST_BYTES,
    VerifiedRequest,
    canonical_json,
    parse_json_object,
    sign_request,
    verify_request,
)
from unlearn_ops.deletion.inbox import Accepted, Inbox
from unlearn_ops.deletion.keys import KeyRing, SigningKey, parse_keys
from unlearn_ops.deletion.requests import MAX_RECORDS_PER_REQUEST, REQUEST_ID_PATTERN, ForgetRequest
from unlearn_ops.errors import (
    InvalidRequestError,
    ReplayedRequestError,
    UnauthenticatedRequestError,
)
from unlearn_ops.settings import Settings

KEY = "sk-test-7f3a-signing-key"
OTHER_KEY = "sk-test-other-0b1d-key"
TOKEN = "tok-test-91c2-bearer"
ID_HASH_KEY = "idk-test-55e0-hash-key"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
# Producers with keys of their own (issue 16): a rotation past its overlap, a revocation,
# a successor not valid yet, and a second producer.
PRODUCER_SECRETS = {
    "crm-old": "sk-test-crm-old-2a77-secret",
    "crm-new": "sk-test-crm-new-93d0-secret",
    "crm-next": "sk-test-crm-next-5c1e-secret",
    "desk-1": "sk-test-desk-one-e4b2-secret",
    "desk-leaked": "sk-test-desk-leak-71f9-secret",
}
RING = KeyRing(
    parse_keys(
        {
            "crm": {
                "crm-old": {
                    "secret": PRODUCER_SECRETS["crm-old"],
                    "valid_until": NOW - timedelta(hours=1),
                },
                "crm-new": {"secret": PRODUCER_SECRETS["crm-new"]},
                "crm-next": {
                    "secret": PRODUCER_SECRETS["crm-next"],
                    "valid_from": NOW + timedelta(days=1),
                },
            },
            "support-desk": {
                "desk-1": {"secret": PRODUCER_SECRETS["desk-1"]},
                "desk-leaked": {
                    "secret": PRODUCER_SECRETS["desk-leaked"],
                    "revoked_at": NOW - timedelta(minutes=5),
                },
            },
        },
        "test keys",
    )
)
SECRETS = (KEY, OTHER_KEY, TOKEN, ID_HASH_KEY, *PRODUCER_SECRETS.values())
MAX_AGE = 3600
SKEW = 300
SETTINGS = intake_settings(
    KEY, TOKEN, ID_HASH_KEY, request_max_age_seconds=MAX_AGE, request_clock_skew_seconds=SKEW
)
NO_TOKEN = SETTINGS.model_copy(update={"request_bearer_token": None})
NO_KEY = SETTINGS.model_copy(update={"request_signing_key": None})
EMPTY_SECRETS = SETTINGS.model_copy(
    update={"request_signing_key": SecretStr(""), "request_bearer_token": SecretStr("")}
)
REQUEST: dict[str, Any] = {
    "request_id": "dsr-2026-0042",
    "record_ids": ["patient-4711-xyz", "patient-0815-xyz"],
    "reason": "GDPR art. 17",
    "requested_at": "2026-11-20T09:30:00+00:00",
}
# Distinctive ids: a refusal, a log line or the inbox file that holds one is easy to spot.
ID_MARKERS = ("patient-", "subject-")
FUZZ = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
EXAMPLES: Counter[str] = Counter()  # bad inputs run, by family (for the report)


def signed(
    request: Mapping[str, Any] = REQUEST,
    *,
    key: str | bytes = KEY,
    key_id: str = "default",
    age: float = 60.0,
    producer: str | None = None,
) -> dict[str, Any]:
    """An envelope signed `age` seconds before NOW (negative: in the future)."""
    at = NOW - timedelta(seconds=age)
    return sign_request(request, key, key_id=key_id, signed_at=at, producer=producer)


def unsigned(request: Mapping[str, Any] = REQUEST) -> dict[str, Any]:
    return {"version": 1, "request": dict(request)}


def verify(
    data: bytes | str | Mapping[str, Any],
    config: Settings = SETTINGS,
    bearer_token: str | None = None,
    keys: KeyRing | None = None,
) -> VerifiedRequest:
    return verify_request(data, config, bearer_token=bearer_token, now=NOW, keys=keys)


def intake(
    inbox: Inbox,
    data: bytes | str | Mapping[str, Any],
    *,
    config: Settings = SETTINGS,
    bearer_token: str | None = None,
    keys: KeyRing | None = None,
) -> Accepted:
    """What an intake does: verify, then accept; a refusal is recorded and raised."""
    try:
        verified = verify(data, config, bearer_token, keys)
    except UnauthenticatedRequestError as exc:
        inbox.reject("test", exc.kind, str(exc))
        raise
    except InvalidRequestError as exc:
        inbox.reject("test", "malformed", str(exc))
        raise
    return inbox.accept(verified, "test")


def iso(moment: datetime) -> str:
    return moment.isoformat()


# ---------------------------------------------------------------------------- strategies
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
AWARE = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=ZONES
)
NAIVE = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31))
RECORD_ID = st.integers(0, 999_999).map(lambda n: f"patient-{n}-xyz")
SUBJECT_ID = st.integers(0, 999_999).map(lambda n: f"subject-{n}-xyz")
REQUEST_IDS = st.from_regex(REQUEST_ID_PATTERN, fullmatch=True).filter(
    lambda r: len(r) <= 128 and not r.endswith(".lock")
)
REASONS = st.text(min_size=1, max_size=40).filter(
    lambda text: not any(marker in text for marker in ID_MARKERS)
)
FUTURE = st.integers(60, 400 * 86400).map(lambda s: iso(NOW + timedelta(seconds=s)))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
NOT_STRINGS = JSON_VALUES.filter(lambda value: not isinstance(value, str))
NOT_LISTS = JSON_VALUES.filter(lambda value: not isinstance(value, list) and value is not None)
# Numbers are read as Unix times by pydantic: what is wrong for a time is anything else.
NOT_TIMES = st.one_of(
    st.none(),
    st.booleans(),
    st.lists(JSON_VALUES, max_size=2),
    st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=2),
    st.text(max_size=12).filter(lambda text: not re.fullmatch(r"\s*[0-9.+\-eE]+\s*", text)),
)


@st.composite
def valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request that verifies when signed: records or a subject, maybe an expiry."""
    request: dict[str, Any] = {
        "request_id": draw(REQUEST_IDS),
        "reason": draw(REASONS),
        "requested_at": iso(draw(AWARE)),
    }
    if draw(st.booleans()):
        request["record_ids"] = draw(st.lists(RECORD_ID, min_size=1, max_size=5))
    else:
        request["subject_id"] = draw(SUBJECT_ID)
    expiry = draw(st.sampled_from(["absent", "null", "future"]))
    if expiry != "absent":
        request["expires_at"] = None if expiry == "null" else draw(FUTURE)
    return request


VALID_REQUESTS = valid_requests()
AGES = st.integers(-SKEW, MAX_AGE)  # signing times that are neither expired nor future


@st.composite
def valid_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    return signed(draw(VALID_REQUESTS), age=draw(AGES))


VALID_ENVELOPES = valid_envelopes()


@dataclass(frozen=True)
class Bad:
    """A bad input, how it is presented, and the refusal it must get."""

    family: str
    data: bytes | str | Mapping[str, Any]
    error: type[Exception]
    kind: str | None = None  # UnauthenticatedRequestError.kind
    config: Settings = SETTINGS
    bearer_token: str | None = None
    words: str | None = None  # what the message must contain
    keys: KeyRing | None = None  # the producers' keys (None: the settings' key)

    @property
    def recorded_kind(self) -> str:
        return self.kind or "malformed"


def wire(envelope: Mapping[str, Any], form: str) -> bytes | str | Mapping[str, Any]:
    """The envelope as bytes, as text, or as the mapping an event payload carries."""
    if form == "bytes":
        return json.dumps(envelope).encode()
    if form == "text":
        return json.dumps(envelope, indent=1, ensure_ascii=False)
    return envelope


FORMS = st.sampled_from(["bytes", "text", "mapping"])
REQUEST_FIELDS = ["request_id", "record_ids", "subject_id", "reason", "requested_at", "expires_at"]


FORGED_FIELDS = [*REQUEST_FIELDS, "signed_at", "value"]


@st.composite
def forged(draw: st.DrawFn, field: str) -> Bad:
    """A good envelope with one signed field (or the signature) changed to a valid value."""
    envelope = draw(VALID_ENVELOPES)
    changed = copy.deepcopy(envelope)
    request = changed["request"]
    if field == "request_id":
        request["request_id"] = draw(REQUEST_IDS)
    elif field in ("record_ids", "subject_id"):
        other = "subject_id" if field == "record_ids" else "record_ids"
        request.pop(other, None)
        request[field] = draw(
            st.lists(RECORD_ID, min_size=1, max_size=5) if field == "record_ids" else SUBJECT_ID
        )
    elif field == "reason":
        request["reason"] = draw(REASONS)
    elif field == "requested_at":
        request["requested_at"] = iso(draw(AWARE))
    elif field == "expires_at":
        choice = draw(st.sampled_from(["remove", "null", "other"]))
        if choice == "remove":
            request.pop("expires_at", None)
        else:
            request["expires_at"] = None if choice == "null" else draw(FUTURE)
    elif field == "signed_at":
        changed["signature"]["signed_at"] = iso(draw(AWARE))
    else:
        changed["signature"]["value"] = draw(
            st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
        )
    if changed == envelope:  # the draw changed nothing: change the reason instead
        request["reason"] = request["reason"] + "."
    return Bad(f"forged {field}", wire(changed, draw(FORMS)), UnauthenticatedRequestError, "forged")


UNAUTHENTICATED = [
    "unsigned",
    "signature null",
    "other key",
    "other key as bytes",
    "unknown key id",
    "no key configured",
    "empty key configured",
    "wrong token",
    "token, none configured",
    "empty token configured",
    "token on another key's signature",
]


@st.composite
def unauthenticated(draw: st.DrawFn, case: str) -> Bad:
    """Unsigned, another key, an unknown key id, no key here, bearer-token mistakes."""
    request = draw(VALID_REQUESTS)
    form = draw(FORMS)
    age = draw(AGES)
    if case == "unsigned":
        return Bad(case, wire(unsigned(request), form), UnauthenticatedRequestError, "unsigned")
    if case == "signature null":
        data = {**unsigned(request), "signature": None}
        return Bad(case, wire(data, form), UnauthenticatedRequestError, "unsigned")
    if case in ("other key", "other key as bytes"):
        key = draw(st.text(min_size=1, max_size=30).filter(lambda k: k != KEY))
        data = signed(request, key=key.encode() if case.endswith("bytes") else key, age=age)
        return Bad(case, wire(data, form), UnauthenticatedRequestError, "forged")
    if case == "unknown key id":
        key_id = draw(st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True))
        data = signed(request, key_id=key_id if key_id != "default" else "default2", age=age)
        return Bad(case, wire(data, form), UnauthenticatedRequestError, "unknown-key")
    if case in ("no key configured", "empty key configured"):
        config = NO_KEY if case.startswith("no") else EMPTY_SECRETS
        data = signed(request, key="" if case.startswith("empty") else KEY, age=age)
        return Bad(case, wire(data, form), UnauthenticatedRequestError, "unknown-key", config)
    if case == "wrong token":
        token = draw(st.text(max_size=40).filter(lambda t: t != TOKEN))
        sent = wire(unsigned(request), form)
        return Bad(case, sent, UnauthenticatedRequestError, "bad-token", bearer_token=token)
    if case in ("token, none configured", "empty token configured"):
        token = draw(st.sampled_from([TOKEN, "", " "]) | st.text(max_size=20))
        config = NO_TOKEN if case.startswith("token") else EMPTY_SECRETS
        sent = wire(unsigned(request), form)
        return Bad(case, sent, UnauthenticatedRequestError, "bad-token", config, token)
    # A bearer token does not make up for a signature that does not match.
    data = signed(request, key=OTHER_KEY, age=age)
    token = draw(st.sampled_from([TOKEN, "wrong-token"]))
    return Bad(case, wire(data, form), UnauthenticatedRequestError, "forged", bearer_token=token)


PRODUCER_KEYS = [
    "revoked key",
    "expired rotation key",
    "key not valid yet",
    "key of another producer",
    "own key of another producer, forged",
    "settings key unknown to the ring",
]


def producer_key(key_id: str) -> SigningKey:
    key = RING.get(key_id)
    assert key is not None
    return key


@st.composite
def producer_keys(draw: st.DrawFn, case: str) -> Bad:
    """A request signed with a producer's key that may not be used now, or not by it."""
    request = draw(VALID_REQUESTS)
    form = draw(FORMS)
    age = draw(AGES)
    if case == "revoked key":
        key_id, producer, kind = (
            "desk-leaked",
            draw(st.sampled_from([None, "support-desk"])),
            "revoked-key",
        )
    elif case == "expired rotation key":
        key_id, producer, kind = "crm-old", draw(st.sampled_from([None, "crm"])), "expired-key"
    elif case == "key not valid yet":
        key_id, producer, kind = "crm-next", None, "not-yet-valid-key"
    elif case == "key of another producer":
        key_id, producer, kind = draw(st.sampled_from(["desk-1", "crm-new"])), None, "foreign-key"
        producer = "crm" if key_id == "desk-1" else "support-desk"
    elif case == "own key of another producer, forged":
        # The key id of one producer, the secret of another: a forgery, whoever tries it.
        data = signed(request, key=PRODUCER_SECRETS["desk-1"], key_id="crm-new", age=age)
        return Bad(case, wire(data, form), UnauthenticatedRequestError, "forged", keys=RING)
    else:
        data = signed(request, age=age)  # `default` is the settings' key, not in this ring
        return Bad(case, wire(data, form), UnauthenticatedRequestError, "unknown-key", keys=RING)
    secret = producer_key(key_id).secret.get_secret_value()
    data = signed(request, key=secret, key_id=key_id, age=age, producer=producer)
    return Bad(case, wire(data, form), UnauthenticatedRequestError, kind, keys=RING)


OUT_OF_TIME = ["old signature", "expires_at past", "bearer expired", "future"]


@st.composite
def out_of_time(draw: st.DrawFn, case: str) -> Bad:
    """Signed too long ago, past its own expires_at, or signed in the future."""
    request = draw(VALID_REQUESTS)
    form = draw(FORMS)
    late = draw(st.integers(1, 10 * 365 * 86400))  # seconds beyond the limit
    if case == "old signature":
        data = wire(signed(request, age=MAX_AGE + late), form)
        return Bad(case, data, UnauthenticatedRequestError, "expired", words="sign it again")
    if case == "future":
        data = wire(signed(request, age=-(SKEW + late)), form)
        return Bad(case, data, UnauthenticatedRequestError, "not-yet-valid", words="clock")
    request = {**request, "expires_at": iso(NOW - timedelta(seconds=late))}
    if case == "bearer expired":
        data = wire(unsigned(request), form)
        expired = Bad(case, data, UnauthenticatedRequestError, "expired", words="expires_at")
        return dataclasses.replace(expired, bearer_token=TOKEN)
    data = wire(signed(request, age=draw(AGES)), form)
    return Bad(case, data, UnauthenticatedRequestError, "expired", words="expires_at")


OVERSIZED = ["padded envelope", "filler bytes", "too many ids"]


@st.composite
def oversized(draw: st.DrawFn, case: str) -> Bad:
    """More than MAX_REQUEST_BYTES (even if otherwise valid), or more than 10,000 ids."""
    if case == "too many ids":
        extra = draw(st.integers(1, 50))
        ids = [f"patient-{i}-xyz" for i in range(MAX_RECORDS_PER_REQUEST + extra)]
        envelope = signed({**REQUEST, "record_ids": ids})
        words = "at most 10000 items"
        return Bad(case, wire(envelope, draw(FORMS)), InvalidRequestError, words=words)
    size = MAX_REQUEST_BYTES + draw(st.integers(1, 64 * 1024))
    if case == "padded envelope":
        text = json.dumps(draw(VALID_ENVELOPES))
        body = (text + " " * (size - len(text.encode()))).encode()
    else:
        body = draw(st.sampled_from([b"x", b"{", b" ", b"\xff", b"\x00"])) * size
    data: bytes | str = body if draw(st.booleans()) else body.decode("latin-1")
    return Bad(case, data, InvalidRequestError, words="1,048,576 allowed")


def render(value: Any, duplicate: tuple[str, ...] | None) -> str:
    """JSON text of `value`, with one key written twice in the object at `duplicate`."""
    if isinstance(value, dict):
        items = [f"{json.dumps(k)}:{render(v, None)}" for k, v in value.items()]
        if duplicate is not None and len(duplicate) == 1:
            key = duplicate[0]
            items.append(f"{json.dumps(key)}:{json.dumps(value[key])}")
        elif duplicate:
            items = [
                f"{json.dumps(k)}:{render(v, duplicate[1:] if k == duplicate[0] else None)}"
                for k, v in value.items()
            ]
        return "{" + ",".join(items) + "}"
    return json.dumps(value)


WRONG_TYPES: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("version",): JSON_VALUES.filter(lambda v: v != 1),  # 1, 1.0 and true all read as 1
    ("request",): JSON_VALUES.filter(lambda v: not isinstance(v, dict)),
    ("signature",): JSON_VALUES.filter(lambda v: not isinstance(v, dict) and v is not None),
    ("request", "request_id"): NOT_STRINGS,
    ("request", "record_ids"): NOT_LISTS,
    ("request", "reason"): NOT_STRINGS,
    ("request", "requested_at"): NOT_TIMES,
    ("request", "expires_at"): NOT_TIMES.filter(lambda v: v is not None),
    ("signature", "algorithm"): JSON_VALUES.filter(lambda v: v != ALGORITHM),
    ("signature", "key_id"): NOT_STRINGS | st.sampled_from(["", "a b", "x" * 65, "é", "k\n"]),
    ("signature", "signed_at"): NOT_TIMES,
    ("signature", "value"): NOT_STRINGS
    | st.text(max_size=70).filter(lambda v: not re.fullmatch(r"[0-9a-f]{64}", v)),
}
REQUIRED = [
    ("version",),
    ("request",),
    ("request", "request_id"),
    ("request", "reason"),
    ("request", "requested_at"),
    ("signature", "algorithm"),
    ("signature", "signed_at"),
    ("signature", "value"),
]
FIELDS = {
    (): {"version", "request", "signature"},
    ("request",): {*REQUEST_FIELDS},
    ("signature",): {"algorithm", "key_id", "signed_at", "value"},
}


def at(envelope: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for part in path:
        envelope = envelope[part]
    return envelope


MALFORMED = [
    "random bytes",
    "random JSON",
    "random object",
    "not an object",
    "missing field",
    "no records and no subject",
    "records and subject",
    "extra field",
    "wrong type",
    "bool as id",
    "bad id",
    "naive time",
    "duplicate key",
    "NaN",
    "deep nesting",
    "broken UTF-8",
    "lone surrogate",
    "huge number",
    "empty",
]


@st.composite
def malformed(draw: st.DrawFn, case: str) -> Bad:
    """Not UTF-8, not JSON, not an object, a missing, extra or mistyped field, and so on."""
    envelope = draw(VALID_ENVELOPES)
    request = envelope["request"]
    form = draw(FORMS)
    if case == "random bytes":
        return Bad(case, draw(st.binary(max_size=300)), InvalidRequestError)
    if case == "random JSON":
        return Bad(case, json.dumps(draw(JSON_VALUES)), InvalidRequestError)
    if case == "random object":
        data = draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5))
        return Bad(case, wire(data, form), InvalidRequestError)
    if case == "not an object":
        value = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
        return Bad(case, json.dumps(value), InvalidRequestError, words="must be a JSON object")
    if case == "missing field":
        path = draw(st.sampled_from(REQUIRED))
        del at(envelope, path[:-1])[path[-1]]
        return Bad(case, wire(envelope, form), InvalidRequestError, words="Field required")
    if case == "no records and no subject":
        request.pop("record_ids", None)
        request.pop("subject_id", None)
        return Bad(case, wire(envelope, form), InvalidRequestError, words="exactly one of")
    if case == "records and subject":
        request["record_ids"] = draw(st.lists(RECORD_ID, min_size=1, max_size=3))
        request["subject_id"] = draw(SUBJECT_ID)
        return Bad(case, wire(envelope, form), InvalidRequestError, words="exactly one of")
    if case == "extra field":
        where = draw(st.sampled_from(sorted(FIELDS)))
        key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in FIELDS[where]))
        at(envelope, where)[key] = draw(JSON_VALUES)
        return Bad(case, wire(envelope, form), InvalidRequestError, words="Extra inputs")
    if case == "wrong type":
        path = draw(st.sampled_from(sorted(WRONG_TYPES)))
        at(envelope, path[:-1])[path[-1]] = draw(WRONG_TYPES[path])
        return Bad(case, wire(envelope, form), InvalidRequestError)
    if case == "bool as id":
        ids: list[object] = draw(st.lists(RECORD_ID, max_size=4))
        ids.insert(draw(st.integers(0, len(ids))), draw(st.booleans()))
        request.pop("subject_id", None)
        request["record_ids"] = ids
        return Bad(case, wire(envelope, form), InvalidRequestError, words="got bool")
    if case == "bad id":
        bad = draw(
            st.sampled_from(["", "   ", "x" * 257])
            | st.lists(RECORD_ID, min_size=1, max_size=2)
            | st.dictionaries(RECORD_ID, RECORD_ID, min_size=1, max_size=2)
            | st.floats(allow_nan=False, allow_infinity=False)  # infinity is not JSON: its own case
            | st.none()
        )
        request.pop("subject_id", None)
        request["record_ids"] = [draw(RECORD_ID), bad]
        return Bad(case, wire(envelope, form), InvalidRequestError, words="record ids must")
    if case == "naive time":
        path = draw(
            st.sampled_from(
                [("request", "requested_at"), ("request", "expires_at"), ("signature", "signed_at")]
            )
        )
        at(envelope, path[:-1])[path[-1]] = iso(draw(NAIVE))
        return Bad(case, wire(envelope, form), InvalidRequestError, words="timezone")
    if case == "duplicate key":
        where = draw(st.sampled_from([(), ("request",), ("signature",)]))
        key = draw(st.sampled_from(sorted(at(envelope, where))))
        text = render(envelope, (*where, key))
        sent = text.encode() if draw(st.booleans()) else text
        return Bad(case, sent, InvalidRequestError, words="duplicate key")
    if case == "NaN":
        path = draw(st.sampled_from([*WRONG_TYPES, ("request", "x-extra")]))
        at(envelope, path[:-1])[path[-1]] = draw(
            st.sampled_from([float("nan"), float("inf"), float("-inf")])
        )
        return Bad(case, json.dumps(envelope), InvalidRequestError, words="not valid JSON")
    if case == "deep nesting":
        depth = draw(st.integers(2_000, 200_000))
        if draw(st.booleans()):
            nested = "[" * depth + "]" * depth
        else:
            nested = '{"a":' * depth + "1" + "}" * depth
        where = draw(st.sampled_from([(), ("request",), ("request", "reason"), ("x-deep",)]))
        if where:
            at(envelope, where[:-1])[where[-1]] = "<deep>"
        text = json.dumps(envelope).replace('"<deep>"', nested) if where else nested
        sent = text.encode() if draw(st.booleans()) else text
        return Bad(case, sent, InvalidRequestError)
    if case == "broken UTF-8":
        body = bytearray(json.dumps(envelope, ensure_ascii=False).encode())
        # Bytes that no UTF-8 text holds: a continuation byte (0x80) that replaced another
        # one left the text valid, and the "broken" request verified (run alone, the zz test).
        body[draw(st.integers(0, len(body) - 1))] = draw(st.sampled_from([0xFF, 0xC0, 0xF8]))
        return Bad(case, bytes(body), InvalidRequestError)
    if case == "lone surrogate":
        text = json.dumps(envelope, ensure_ascii=False)
        position = draw(st.integers(0, len(text)))
        broken = text[:position] + "\ud800" + text[position:]
        return Bad(case, broken, InvalidRequestError, words="not UTF-8")
    if case == "huge number":
        digits = "9" * draw(st.integers(4_301, 20_000))
        text = json.dumps(envelope).replace('"version": 1', f'"version": {digits}')
        return Bad(case, text, InvalidRequestError, words="number too long")
    empties: list[bytes | str] = [b"", "", b" ", "\n", "null", "[]", "{}"]
    empty = draw(st.sampled_from(empties))
    return Bad(case, empty, InvalidRequestError)


# ------------------------------------------------------------------------- the intake
def snapshot(inbox: Inbox) -> tuple[tuple[object, ...], tuple[int, str, str]]:
    """Everything in the inbox but the rejections; the number and the last of those."""
    with contextlib.closing(sqlite3.connect(inbox.path)) as db:
        requests = db.execute("SELECT * FROM requests ORDER BY request_id").fetchall()
        deliveries = db.execute("SELECT * FROM deliveries ORDER BY delivery_id").fetchall()
        last = db.execute("SELECT id, kind, reason FROM rejections ORDER BY id DESC LIMIT 1")
        rejection = last.fetchone()
    return (inbox.entries(), requests, deliveries), rejection


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory) -> Inbox:
    """One inbox for every bad input: two good requests (one done), one refusal."""
    inbox = Inbox(tmp_path_factory.mktemp("fuzz") / "inbox.db", SETTINGS)
    intake(inbox, signed(REQUEST))
    intake(inbox, unsigned({**REQUEST, "request_id": "dsr-bearer"}), bearer_token=TOKEN)
    inbox.claim("run-1")
    inbox.complete(["dsr-2026-0042"], {"version": "7"})
    with pytest.raises(UnauthenticatedRequestError):
        intake(inbox, unsigned())
    return inbox


def secret_values(bad: Bad) -> list[str]:
    """The secrets, and any signature value, that a refusal must never repeat."""
    values = list(SECRETS)
    text = bad.data if isinstance(bad.data, str) else None
    if isinstance(bad.data, bytes) and len(bad.data) <= MAX_REQUEST_BYTES:
        text = bad.data.decode("utf-8", "replace")
    if isinstance(bad.data, Mapping):
        text = json.dumps(bad.data)
    if text is not None:
        values += re.findall(r"[0-9a-f]{64}", text)
    if bad.bearer_token and len(bad.bearer_token) >= 8:
        values.append(bad.bearer_token)
    return values


def refused(inbox: Inbox, bad: Bad) -> None:
    """Feed one bad input through the intake and check the refusal and what it left."""
    EXAMPLES[bad.family] += 1
    before, (last_id, _, _) = snapshot(inbox)
    with pytest.raises(bad.error) as caught:
        intake(inbox, bad.data, config=bad.config, bearer_token=bad.bearer_token, keys=bad.keys)
    error = caught.value
    assert not isinstance(error, ReplayedRequestError)
    if bad.kind is not None:
        assert isinstance(error, UnauthenticatedRequestError)
        assert error.kind == bad.kind, f"{bad.family}: {error}"
    message = str(error)
    assert message.startswith(("invalid request: ", "unauthenticated request ("))
    assert len(message.splitlines()) == 1, f"{bad.family}: not one line: {message!r}"
    assert len(message) < 4000
    if bad.words is not None:
        assert bad.words in message, f"{bad.family}: {message}"
    for secret in secret_values(bad):
        assert secret not in message, f"{bad.family}: the message repeats a secret"
    assert not any(marker in message for marker in ID_MARKERS), message
    after, rejection = snapshot(inbox)
    assert after == before
    assert rejection == (last_id + 1, bad.recorded_kind, message[:1000])


# One property per (family, case), each case drawn as often as the others; the time and size
# families draw fewer examples (their requests are slow to build).
FAMILIES: dict[str, tuple[Callable[[str], st.SearchStrategy[Bad]], list[str], int]] = {
    "forged": (forged, FORGED_FIELDS, 15),
    "unauthenticated": (unauthenticated, UNAUTHENTICATED, 15),
    "producer keys": (producer_keys, PRODUCER_KEYS, 15),
    "out of time": (out_of_time, OUT_OF_TIME, 20),
    "oversized": (oversized, OVERSIZED, 8),
    "malformed": (malformed, MALFORMED, 15),
}
CASES = [(family, case) for family, (_, cases, _) in FAMILIES.items() for case in cases]


def _example_key(family: str, case: str) -> str:
    return f"forged {case}" if family == "forged" else case


@pytest.mark.parametrize(("family", "case"), CASES)
def test_every_bad_request_is_refused_with_one_clear_message(
    inbox: Inbox, family: str, case: str
) -> None:
    strategy, _, examples = FAMILIES[family]

    @settings(FUZZ, max_examples=examples)
    @given(data=st.data())
    def refuses(data: st.DataObject) -> None:
        refused(inbox, data.draw(strategy(case), label="bad"))

    refuses()


def test_zz_the_fuzz_covered_every_family_and_left_no_record_id(inbox: Inbox) -> None:
    """Runs after the property tests of this module (pytest keeps the file's order).

    Run alone (a node id, `-k`), it draws the families that no property test drew first.
    """
    for family, case in CASES:
        if not EXAMPLES[_example_key(family, case)]:
            test_every_bad_request_is_refused_with_one_clear_message(inbox, family, case)
    files = [path for path in inbox.path.parent.iterdir() if path.is_file()]
    assert inbox.path in files
    for path in files:  # the database, its WAL and shared memory: no id, no secret
        data = path.read_bytes()
        for text in (*ID_MARKERS, *SECRETS):
            assert text.encode() not in data, f"{path.name} holds {text!r}"
    kinds = Counter(rejection.kind for rejection in inbox.rejections())
    assert sum(kinds.values()) == sum(EXAMPLES.values()) + 1
    assert sorted(kinds) == [
        "bad-token",
        "expired",
        "expired-key",
        "foreign-key",
        "forged",
        "malformed",
        "not-yet-valid",
        "not-yet-valid-key",
        "revoked-key",
        "unknown-key",
        "unsigned",
    ]
    print(f"\nbad inputs refused: {sum(EXAMPLES.values())} {dict(sorted(EXAMPLES.items()))}")
    families = [_example_key(family, case) for family, case in CASES]
    assert {family: EXAMPLES[family] for family in families if EXAMPLES[family] < 8} == {}
    assert sum(EXAMPLES.values()) >= 600


# ---------------------------------------------------------------------------- good
def test_a_signed_request_verifies_from_bytes_text_and_a_mapping() -> None:
    envelope = signed()
    for data in (json.dumps(envelope).encode(), json.dumps(envelope), envelope):
        verified = verify(data)
        assert verified.authenticated_by == "hmac:default"
        assert verified.request_id == "dsr-2026-0042"
        assert verified.body.record_ids == ("patient-4711-xyz", "patient-0815-xyz")
        assert verified.body.reason == "GDPR art. 17"
        assert verified.body.requested_at == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
        assert verified.signed_at == NOW - timedelta(seconds=60)


def test_the_signature_covers_content_not_layout() -> None:
    envelope = signed({**REQUEST, "reason": "Recht auf Löschung – Art. 17"})
    layouts = [
        json.dumps(envelope, indent=4, sort_keys=True),
        json.dumps(envelope, separators=(",", ":")),
        json.dumps(envelope, ensure_ascii=True),
        "\n  " + json.dumps(dict(reversed(list(envelope.items())))) + "\n",
    ]
    for text in layouts:
        assert verify(text).body.reason == "Recht auf Löschung – Art. 17"


def test_canonical_json_sorts_keys_and_keeps_utf8() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == (
        '{"a":[1,{"c":null,"d":"é"}],"b":1}'.encode()
    )


# Signed on 2026-12-02 by the code of main before canonical JSON moved to
# unlearn_ops.canonical; frozen so that any change of the signed bytes shows here.
FROZEN_ENVELOPE = (
    '{"version": 1, "request": {"reason": "Recht auf Löschung – Art. 17", "record_ids": '
    '["patient-4711-xyz", "patient-0815-xyz"], "request_id": "dsr-2026-0099", '
    '"requested_at": "2026-11-20T09:30:00+00:00"}, "signature": {"algorithm": '
    '"hmac-sha256", "key_id": "default", "signed_at": "2026-11-20T09:45:00+00:00", '
    '"value": "0126f57b0f197e00910e23ac70427b25dd54de36bd5520af5d5828050456fd15"}}'
)


def test_a_request_signed_by_the_previous_code_still_verifies() -> None:
    verified = verify(FROZEN_ENVELOPE)
    assert verified.request_id == "dsr-2026-0099"
    assert verified.body.reason == "Recht auf Löschung – Art. 17"
    frozen = json.loads(FROZEN_ENVELOPE)
    resigned = sign_request(
        frozen["request"], KEY, signed_at=datetime(2026, 11, 20, 9, 45, tzinfo=UTC)
    )
    assert resigned == frozen


def test_the_frozen_signature_covers_the_non_ascii_text() -> None:
    tampered = FROZEN_ENVELOPE.replace("Löschung", "Loschung")
    with pytest.raises(UnauthenticatedRequestError):
        verify(tampered)


def test_sign_request_signs_the_json_form_of_the_request() -> None:
    envelope = sign_request(
        {
            "request_id": "r1",
            "record_ids": (7, "8"),
            "reason": "x",
            "requested_at": NOW.isoformat(),
        },
        KEY,
        signed_at=NOW,
    )
    assert envelope["request"]["record_ids"] == [7, "8"]  # a tuple travels as a list
    assert envelope["signature"] == {
        "algorithm": "hmac-sha256",
        "key_id": "default",
        "signed_at": "2026-11-20T10:00:00+00:00",
        "value": envelope["signature"]["value"],
    }
    assert re.fullmatch(r"[0-9a-f]{64}", envelope["signature"]["value"])
    assert verify(envelope).body.record_ids == ("7", "8")


def test_record_ids_are_canonical_text_without_duplicates() -> None:
    ids = [7, "7", " 8 ", "patient-1-xyz", 8, "patient-1-xyz"]
    verified = verify(signed({**REQUEST, "record_ids": ids}))
    assert verified.body.record_ids == ("7", "8", "patient-1-xyz")
    # A Python caller may hand a tuple: it is read the same way.
    request = verify(unsigned({**REQUEST, "record_ids": tuple(ids)}), bearer_token=TOKEN)
    assert request.body.record_ids == ("7", "8", "patient-1-xyz")


def test_a_subject_request_verifies_and_hashes_its_subject() -> None:
    subject = {k: v for k, v in REQUEST.items() if k != "record_ids"}
    verified = verify(signed({**subject, "subject_id": "subject-981-xyz"}))
    assert verified.body.subject_id == "subject-981-xyz"
    assert verified.record_hashes(SETTINGS) == []
    assert verified.subject_hash(SETTINGS) == SETTINGS.hash_record_id("subject:subject-981-xyz")
    with pytest.raises(InvalidRequestError, match="names a subject, not records"):
        verified.to_forget_request()


def test_a_bearer_token_vouches_for_an_unsigned_request() -> None:
    verified = verify(unsigned(), bearer_token=TOKEN)
    assert verified.authenticated_by == "bearer"
    assert verified.signed_at is None
    # A signed request needs no token, and a wrong token does not spoil a good signature.
    assert verify(signed(), SETTINGS, "wrong").authenticated_by == "hmac:default"


def test_the_limits_are_inclusive() -> None:
    assert verify(signed(age=MAX_AGE)).signed_at == NOW - timedelta(seconds=MAX_AGE)
    assert verify(signed(age=-SKEW)).signed_at == NOW + timedelta(seconds=SKEW)
    with pytest.raises(UnauthenticatedRequestError, match=r"\(expired\)"):
        verify(signed(age=MAX_AGE + 0.001))
    with pytest.raises(UnauthenticatedRequestError, match=r"\(not-yet-valid\)"):
        verify(signed(age=-SKEW - 0.001))
    assert verify(signed({**REQUEST, "expires_at": iso(NOW)})).body.expires_at == NOW
    ids = [str(i) for i in range(MAX_RECORDS_PER_REQUEST)]
    assert verify(signed({**REQUEST, "record_ids": ids})).body.record_ids == tuple(ids)


def test_a_body_of_exactly_the_maximum_size_is_read() -> None:
    text = json.dumps(signed())
    body = (text + " " * (MAX_REQUEST_BYTES - len(text))).encode()
    assert len(body) == MAX_REQUEST_BYTES
    assert verify(body).request_id == "dsr-2026-0042"
    with pytest.raises(InvalidRequestError, match="1,048,577 bytes, more than the 1,048,576"):
        verify(body + b" ")


def test_verification_uses_the_current_time_by_default() -> None:
    fresh = sign_request(REQUEST, KEY)
    assert verify_request(fresh, SETTINGS).authenticated_by == "hmac:default"
    old = sign_request(REQUEST, KEY, signed_at=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(UnauthenticatedRequestError, match="expired"):
        verify_request(old, SETTINGS)


def test_a_verified_request_becomes_a_forget_request() -> None:
    forget = verify(signed()).to_forget_request()
    assert forget == ForgetRequest(
        request_id="dsr-2026-0042",
        record_ids=("patient-4711-xyz", "patient-0815-xyz"),
        reason="GDPR art. 17",
        requested_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
        signed_by="hmac:default",  # the ledger's `received` entry names the key
    )


# ---------------------------------------------------------------------- fingerprints
def test_deliveries_of_one_request_share_a_fingerprint() -> None:
    first = verify(signed()).fingerprint(SETTINGS)
    same = [
        verify(signed(age=0)),  # signed again, later
        verify(unsigned(), bearer_token=TOKEN),  # vouched for by the token instead
        verify(signed({**REQUEST, "record_ids": list(reversed(REQUEST["record_ids"]))})),
        verify(signed({**REQUEST, "requested_at": "2026-11-20T11:30:00+02:00"})),  # same instant
        verify(signed({**REQUEST, "expires_at": None})),
    ]
    assert {v.fingerprint(SETTINGS) for v in same} == {first}
    assert re.fullmatch(r"[0-9a-f]{64}", first)


@pytest.mark.parametrize(
    "change",
    [
        {"record_ids": ["patient-4711-xyz"]},
        {"record_ids": ["patient-4711-xyz", "patient-0815-xyz", "patient-9-xyz"]},
        {"reason": "GDPR art. 17(1)(b)"},
        {"requested_at": "2026-11-20T09:30:01+00:00"},
        {"expires_at": "2027-01-01T00:00:00+00:00"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_a_changed_request_has_another_fingerprint(change: dict[str, Any]) -> None:
    assert verify(signed({**REQUEST, **change})).fingerprint(SETTINGS) != verify(
        signed()
    ).fingerprint(SETTINGS)


def test_a_subject_request_differs_from_a_record_request_of_the_same_text() -> None:
    as_records = verify(signed({**REQUEST, "record_ids": ["subject-1-xyz"]}))
    subject = {k: v for k, v in REQUEST.items() if k != "record_ids"}
    as_subject = verify(signed({**subject, "subject_id": "subject-1-xyz"}))
    assert as_records.fingerprint(SETTINGS) != as_subject.fingerprint(SETTINGS)


def test_fingerprints_and_hashes_hold_no_record_id_and_depend_on_the_key() -> None:
    verified = verify(signed())
    other = SETTINGS.model_copy(update={"id_hash_key": SecretStr("another-id-hash-key")})
    assert verified.fingerprint(SETTINGS) != verified.fingerprint(other)
    hashes = verified.record_hashes(SETTINGS)
    assert hashes == sorted(SETTINGS.hash_record_id(r) for r in REQUEST["record_ids"])
    assert not any("patient" in h for h in [*hashes, verified.fingerprint(SETTINGS)])


# ------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff{}", "invalid request: not UTF-8 text (byte 0)"),
        ("{", "invalid request: not JSON (Expecting property name enclosed in double quotes"),
        ("[1]", "invalid request: a request must be a JSON object, got list"),
        ('{"a": 1, "a": 2}', "invalid request: duplicate key(s) 'a'"),
        ('{"a": NaN}', "invalid request: NaN is not valid JSON"),
        ('{"a": -Infinity}', "invalid request: -Infinity is not valid JSON"),
        ("[" * 100_000, "invalid request: JSON nested too deeply"),
        ("1" * 5000, "invalid request: not JSON (a number too long to read)"),
        ("\ud800{}", "invalid request: not UTF-8 text (byte 0)"),
    ],
    ids=lambda value: repr(value)[:24],
)
def test_parse_json_object_names_what_is_wrong(data: bytes | str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_json_object(data)
    assert str(caught.value).startswith(message)


def test_duplicate_keys_are_found_in_linear_time_and_listed_briefly() -> None:
    many = "{" + ",".join(f'"k{i}":0' for i in range(90_000)) + "}"  # about 1 MiB
    started = time.perf_counter()
    assert len(parse_json_object(many)) == 90_000
    doubled = "{" + ",".join(f'"k{i % 50_000}":0' for i in range(90_000)) + "}"
    with pytest.raises(InvalidRequestError) as caught:
        parse_json_object(doubled)
    assert time.perf_counter() - started < 5.0  # quadratic, this took minutes
    assert str(caught.value).startswith("invalid request: duplicate key(s) 'k0', 'k1', ")
    assert str(caught.value).endswith("(and 39995 more)")


def test_every_shape_problem_is_named_but_at_most_ten() -> None:
    envelope = signed()
    envelope["request"] = {f"x{i}": i for i in range(30)}
    with pytest.raises(InvalidRequestError) as caught:
        verify(envelope)
    message = str(caught.value)
    assert "request.request_id: Field required" in message
    assert "request.x0: Extra inputs are not permitted" in message
    assert message.endswith("(and 23 more)")


def test_a_key_that_breaks_lines_is_escaped_in_the_message() -> None:
    envelope = {**signed(), "sig\nnature\u2028": 1}
    with pytest.raises(InvalidRequestError) as caught:
        verify(envelope)
    assert str(caught.value) == (
        "invalid request: sig\\nnature\\u2028: Extra inputs are not permitted"
    )


def test_a_malformed_id_is_refused_by_its_type_not_its_value() -> None:
    envelope = signed({**REQUEST, "record_ids": ["patient-1-xyz", ["patient-4711-xyz"]]})
    with pytest.raises(InvalidRequestError) as caught:
        verify(envelope)
    assert str(caught.value) == (
        "invalid request: request.record_ids: Value error, "
        "record ids must be strings or integers, got list"
    )


@pytest.mark.parametrize(
    ("data", "config", "token", "kind"),
    [
        (unsigned(), SETTINGS, None, "unsigned"),
        (unsigned(), SETTINGS, "", "bad-token"),
        (unsigned(), SETTINGS, TOKEN.upper(), "bad-token"),
        (unsigned(), SETTINGS, TOKEN + " ", "bad-token"),
        (unsigned(), NO_TOKEN, TOKEN, "bad-token"),
        (unsigned(), EMPTY_SECRETS, "", "bad-token"),
        (signed(key=""), EMPTY_SECRETS, None, "unknown-key"),
        (signed(), NO_KEY, None, "unknown-key"),
        (signed(key_id="rotated-2027"), SETTINGS, None, "unknown-key"),
        (signed(key=OTHER_KEY), SETTINGS, TOKEN, "forged"),
        (signed(key=KEY.encode()), SETTINGS, None, None),
    ],
    ids=[
        "unsigned",
        "empty token",
        "token case",
        "token space",
        "no token configured",
        "empty token configured",
        "empty key configured",
        "no key configured",
        "unknown key id",
        "token with a forged signature",
        "key as bytes",
    ],
)
def test_authentication(
    data: dict[str, Any], config: Settings, token: str | None, kind: str | None
) -> None:
    if kind is None:
        assert verify(data, config, token).authenticated_by == "hmac:default"
        return
    with pytest.raises(UnauthenticatedRequestError) as caught:
        verify(data, config, token)
    assert caught.value.kind == kind
    assert isinstance(caught.value, PermissionError)
    assert str(caught.value).startswith(f"unauthenticated request ({kind}): ")


def test_checks_run_in_order_shape_then_signature_then_time() -> None:
    # Malformed and forged: malformed. Forged and expired: forged.
    bad_shape = signed(key=OTHER_KEY, age=10 * MAX_AGE)
    bad_shape["request"]["reason"] = 5
    with pytest.raises(InvalidRequestError):
        verify(bad_shape)
    with pytest.raises(UnauthenticatedRequestError, match=r"\(forged\)"):
        verify(signed(key=OTHER_KEY, age=10 * MAX_AGE))
    with pytest.raises(UnauthenticatedRequestError, match=r"\(unsigned\)"):
        verify(unsigned({**REQUEST, "expires_at": iso(NOW - timedelta(days=1))}))


def test_expired_messages_say_what_to_do() -> None:
    checks: list[tuple[Callable[[], object], str]] = [
        (lambda: verify(signed(age=MAX_AGE + 1)), "signed more than 3600 s ago; sign it again"),
        (
            lambda: verify(signed({**REQUEST, "expires_at": iso(NOW - timedelta(seconds=1))})),
            "past its expires_at; send a new request",
        ),
        (lambda: verify(signed(age=-SKEW - 1)), "signed in the future; check the producer's clock"),
    ]
    for check, words in checks:
        with pytest.raises(UnauthenticatedRequestError, match=re.escape(words)):
            check()

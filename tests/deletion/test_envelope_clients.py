"""Client withdrawals in the signed envelope: `client_id`, and record requests unchanged.

Golden values were computed with the envelope before `client_id` existed: a record or
subject request signed then still verifies and keeps its fingerprint (a replay of it is
still a duplicate, not a changed request).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from unlearn_ops.deletion.envelope import sign_request, verify_request
from unlearn_ops.errors import InvalidRequestError
from unlearn_ops.settings import Settings

SETTINGS = Settings(request_signing_key="k", id_hash_key="h")
SIGNED_AT = datetime(2026, 11, 20, 9, 31, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 9, 32, tzinfo=UTC)
AT = "2026-11-20T09:30:00+00:00"


def test_a_record_request_keeps_its_fingerprint() -> None:
    request = {"request_id": "r1", "record_ids": ["7", "9"], "reason": "GDPR art. 17"}
    envelope = sign_request({**request, "requested_at": AT}, "k", signed_at=SIGNED_AT)
    verified = verify_request(envelope, SETTINGS, now=NOW)
    assert verified.fingerprint(SETTINGS) == (
        "5db45ba449ab33b80d250e1f5e09b15d302b2a5a0a5c67d26f93e40961ef0763"
    )
    assert verified.client_hash(SETTINGS) is None


def test_a_subject_request_signed_before_client_ids_still_verifies() -> None:
    envelope = {
        "version": 1,
        "request": {"reason": "x", "request_id": "r2", "requested_at": AT, "subject_id": "c-1"},
        "signature": {
            "algorithm": "hmac-sha256",
            "key_id": "default",
            "signed_at": "2026-11-20T09:31:00+00:00",
            "value": "65967fad2aef24145fb7c7e0ff50080076de0fee81b53fbafa6ff5a70e58a4c7",
        },
    }
    assert verify_request(envelope, SETTINGS, now=NOW).body.subject_id == "c-1"


def test_a_client_request_verifies_and_names_the_client_by_keyed_hash() -> None:
    request = {"request_id": "w1", "client_id": "hospital-3", "reason": "consent withdrawn"}
    envelope = sign_request({**request, "requested_at": AT}, "k", signed_at=SIGNED_AT)
    verified = verify_request(envelope, SETTINGS, now=NOW)
    client_hash = verified.client_hash(SETTINGS)
    assert client_hash == SETTINGS.hash_record_id("client:hospital-3")
    assert "hospital-3" not in verified.fingerprint(SETTINGS)
    with pytest.raises(InvalidRequestError, match="names a client, not records"):
        verified.to_forget_request()


def test_a_client_request_with_another_client_is_another_fingerprint() -> None:
    def fingerprint(client: str) -> str:
        request = {"request_id": "w1", "client_id": client, "reason": "x", "requested_at": AT}
        envelope = sign_request(request, "k", signed_at=SIGNED_AT)
        return verify_request(envelope, SETTINGS, now=NOW).fingerprint(SETTINGS)

    assert fingerprint("hospital-3") != fingerprint("hospital-4")


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ({"client_id": "hospital-3", "record_ids": ["7"]}, "names no record_ids and no subject"),
        ({"client_id": "hospital-3", "subject_id": "c-1"}, "names no record_ids and no subject"),
        ({}, "exactly one of record_ids and subject_id"),
    ],
)
def test_exactly_one_of_records_subject_and_client(names: dict[str, object], message: str) -> None:
    request = {"request_id": "w1", "reason": "x", "requested_at": AT, **names}
    envelope = sign_request(request, "k", signed_at=SIGNED_AT)
    with pytest.raises(InvalidRequestError, match=message):
        verify_request(envelope, SETTINGS, now=NOW)

"""The status route, GET /v1/deletion-requests/{id}: uvicorn on 127.0.0.1, httpx as producer.

Only the producer that sent a request learns its state (another producer gets the 404 of
a request that does not exist); the query is vouched for by a bearer token or signed with
one of the producer's keys; once served, the answer carries the receipt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from unlearn_ops.adapters.http.app import INTAKE_PATH
from unlearn_ops.adapters.http.auth import sign_query
from unlearn_ops.adapters.http.intake import HttpIntake
from unlearn_ops.deletion.envelope import sign_request
from unlearn_ops.deletion.inbox import Inbox
from unlearn_ops.deletion.keys import SigningKey, load_key_ring
from unlearn_ops.errors import ReceiptError
from unlearn_ops.settings import Settings

TOKEN = "tok-test-status-77aa"
SECRETS = {
    "crm-1": "sk-test-status-crm-1-aaaa",
    "desk-1": "sk-test-status-desk-bbbb",
    "desk-0": "sk-test-status-desk-old-cccc",
}
RECEIPT = {"version": 1, "receipt": {"request_id": "dsr-crm"}, "signature": {"value": "ab"}}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            {
                "crm": {"crm-1": {"secret": SECRETS["crm-1"]}},
                "support-desk": {
                    "desk-1": {"secret": SECRETS["desk-1"]},
                    "desk-0": {"secret": SECRETS["desk-0"], "revoked_at": "2026-01-01T00:00:00Z"},
                },
            }
        )
    )
    keys.chmod(0o600)
    return Settings(
        request_keys_file=keys,
        request_bearer_token=SecretStr(TOKEN),
        id_hash_key=SecretStr("idk-test-status"),
    )


@pytest.fixture
def served(settings: Settings) -> list[str]:
    return []


@pytest.fixture
def intake(tmp_path: Path, settings: Settings, served: list[str]) -> Iterator[HttpIntake]:
    def receipt_for(request_id: str) -> Mapping[str, object]:
        served.append(request_id)
        if request_id == "dsr-bearer":
            raise ReceiptError(request_id, "no receipt key is configured")
        return RECEIPT

    inbox = Inbox(tmp_path / "inbox.db", settings)
    with HttpIntake(inbox, settings, receipt_for=receipt_for) as server:
        yield server


def key(settings: Settings, key_id: str) -> SigningKey:
    return load_key_ring(settings).keys[key_id]


def send(intake: HttpIntake, request_id: str, signer: SigningKey | None) -> None:
    request = {
        "request_id": request_id,
        "record_ids": ["patient-1-xyz"],
        "reason": "GDPR art. 17",
        "requested_at": "2026-11-20T09:30:00+00:00",
    }
    if signer is None:
        envelope: dict[str, Any] = {"version": 1, "request": request}
        headers = {"Authorization": f"Bearer {TOKEN}"}
    else:
        secret = signer.secret.get_secret_value()
        envelope = sign_request(request, secret, key_id=signer.key_id, producer=signer.producer)
        headers = {}
    answer = httpx.post(f"{intake.url}{INTAKE_PATH}", json=envelope, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text


def ask(
    intake: HttpIntake,
    request_id: str,
    signer: SigningKey | None = None,
    *,
    token: str | None = None,
    at: datetime | None = None,
    method: str = "GET",
) -> httpx.Response:
    path = f"{INTAKE_PATH}/{request_id}"
    headers = {} if signer is None else sign_query("GET", path, signer, at)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, f"{intake.url}{path}", headers=headers, timeout=30)


def test_the_producer_that_sent_a_request_sees_its_state_then_its_receipt(
    intake: HttpIntake, settings: Settings, served: list[str]
) -> None:
    crm = key(settings, "crm-1")
    send(intake, "dsr-crm", crm)
    answer = ask(intake, "dsr-crm", crm)
    assert answer.status_code == 200
    body = answer.json()
    assert {k: body[k] for k in ("request_id", "state", "records", "outcome", "receipt")} == {
        "request_id": "dsr-crm",
        "state": "pending",
        "records": 1,
        "outcome": None,
        "receipt": None,
    }
    assert answer.headers["Cache-Control"] == "no-store"
    assert served == []  # no receipt is asked for before the request is served
    intake.inbox.claim("run-1")
    intake.inbox.complete(["dsr-crm"], {"version": "2", "run": "run-1"})
    body = ask(intake, "dsr-crm", crm).json()
    assert (body["state"], body["outcome"]["version"]) == ("done", "2")
    assert body["receipt"] == RECEIPT
    assert served == ["dsr-crm"]


def test_another_producer_gets_the_answer_of_a_request_that_does_not_exist(
    intake: HttpIntake, settings: Settings
) -> None:
    send(intake, "dsr-crm", key(settings, "crm-1"))
    desk = key(settings, "desk-1")
    other = ask(intake, "dsr-crm", desk)
    absent = ask(intake, "dsr-none", desk)
    assert other.status_code == absent.status_code == 404
    assert (
        other.json()
        == absent.json()
        == {
            "error": "not-found",
            "detail": "no request with this id was received from you",
        }
    )
    # The bearer token is a producer of its own: it does not see the crm's requests.
    assert ask(intake, "dsr-crm", token=TOKEN).status_code == 404


def test_a_bearer_token_asks_about_the_requests_it_sent(
    intake: HttpIntake, settings: Settings
) -> None:
    send(intake, "dsr-bearer", None)
    body = ask(intake, "dsr-bearer", token=TOKEN).json()
    assert (body["request_id"], body["state"]) == ("dsr-bearer", "pending")
    assert ask(intake, "dsr-bearer", key(settings, "crm-1")).status_code == 404
    intake.inbox.claim("run-1")
    intake.inbox.complete(["dsr-bearer"], {"version": "2"})
    body = ask(intake, "dsr-bearer", token=TOKEN).json()
    assert body["receipt"] is None
    assert body["receipt_error"] == "receipt for dsr-bearer: no receipt key is configured"


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("unsigned", "unsigned"),
        ("wrong token", "bad-token"),
        ("forged", "forged"),
        ("signed long ago", "expired"),
        ("revoked key", "revoked-key"),
        ("unknown key", "unknown-key"),
    ],
)
def test_a_query_that_nobody_vouches_for_is_refused_401(
    intake: HttpIntake,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    case: str,
    kind: str,
) -> None:
    crm = key(settings, "crm-1")
    send(intake, "dsr-crm", crm)
    caplog.set_level(logging.INFO, logger="unlearn_ops.http_intake")
    path = f"{INTAKE_PATH}/dsr-crm"
    if case == "unsigned":
        answer = ask(intake, "dsr-crm")
    elif case == "wrong token":
        answer = ask(intake, "dsr-crm", token="not-the-token")
    elif case == "forged":
        headers = sign_query("GET", f"{INTAKE_PATH}/dsr-other", crm)  # signed for another path
        answer = httpx.get(f"{intake.url}{path}", headers=headers, timeout=30)
    elif case == "signed long ago":
        answer = ask(intake, "dsr-crm", crm, at=datetime.now(UTC) - timedelta(hours=1))
    elif case == "revoked key":
        answer = ask(intake, "dsr-crm", key(settings, "desk-0"))
    else:
        stranger = SigningKey("crm", "crm-9", SecretStr("sk-test-status-unknown"))
        answer = ask(intake, "dsr-crm", stranger)
    assert answer.status_code == 401
    assert answer.json()["error"] == kind
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    text = answer.text + caplog.text
    assert not any(secret in text for secret in (*SECRETS.values(), TOKEN))
    assert intake.inbox.rejections() == []  # a query is not a delivery


def test_other_methods_on_a_status_are_405(intake: HttpIntake) -> None:
    answer = ask(intake, "dsr-crm", method="DELETE")
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET"

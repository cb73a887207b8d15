"""The HTTP intake: uvicorn on 127.0.0.1 (a free port), real clients (httpx, raw sockets).

Each answer of the table in the app's docstring, the refusals recorded in the inbox,
bearer tokens, concurrency, logs that hold neither the token nor the body, and the
outcomes counted for the listener's summary.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import intake_settings
from unlearn_ops.adapters.http.intake import HEALTH_PATH, INTAKE_PATH, HttpIntake
from unlearn_ops.deletion.envelope import MAX_REQUEST_BYTES, sign_request
from unlearn_ops.deletion.inbox import Inbox
from unlearn_ops.deletion.receive import ReceiveCounts
from unlearn_ops.errors import ConfigError

KEY = "sk-test-http-5d21"
TOKEN = "tok-test-http-e0f4"
SETTINGS = intake_settings(KEY, TOKEN, "idk-test-http-hash-key")
REQUEST: dict[str, Any] = {
    "request_id": "dsr-http-1",
    "record_ids": ["patient-4711-xyz", "patient-0815-xyz"],
    "reason": "GDPR art. 17",
    "requested_at": "2026-11-20T09:30:00+00:00",
}
LOGGER = "unlearn_ops.http_intake"

Answer = tuple[int, Mapping[str, str], dict[str, Any]]


def signed(request: Mapping[str, Any] = REQUEST, key: str = KEY) -> dict[str, Any]:
    """Signed now: the server checks against its own clock."""
    return sign_request(request, key, signed_at=datetime.now(UTC) - timedelta(seconds=1))


def unsigned(request: Mapping[str, Any] = REQUEST) -> dict[str, Any]:
    return {"version": 1, "request": dict(request)}


def call(
    intake: HttpIntake,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One request with httpx; (status, headers, JSON body)."""
    response = httpx.request(
        method, f"{intake.url}{path}", content=body, headers=headers, timeout=30
    )
    return response.status_code, response.headers, response.json() if response.content else {}


def raw_post(intake: HttpIntake, envelope: object, authorization: str) -> Answer:
    """A POST with an Authorization header as given (httpx refuses odd spacing)."""
    body = json.dumps(envelope).encode()
    head = (
        f"POST {INTAKE_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    answer = exchange(intake, head.encode() + body, end=False)
    head_bytes, _, payload = answer.partition(b"\r\n\r\n")
    lines = head_bytes.decode().split("\r\n")
    headers = httpx.Headers([tuple(line.split(": ", 1)) for line in lines[1:]])
    return int(lines[0].split()[1]), headers, json.loads(payload)


def post(intake: HttpIntake, envelope: object, token: str | None = None, **headers: str) -> Answer:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    return call(intake, "POST", INTAKE_PATH, body, {"Content-Type": "application/json", **headers})


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(tmp_path / "inbox.db", SETTINGS)


@pytest.fixture
def woken() -> list[str]:
    return []


@pytest.fixture
def intake(inbox: Inbox, woken: list[str]) -> Iterator[HttpIntake]:
    with HttpIntake(inbox, SETTINGS, on_accepted=woken.append) as server:
        yield server


# ----------------------------------------------------------------------------- accepted
def test_a_signed_request_is_recorded_then_answered_202(
    intake: HttpIntake, inbox: Inbox, woken: list[str]
) -> None:
    status, headers, answer = post(intake, signed())
    assert status == 202
    assert answer == {"request_id": "dsr-http-1", "status": "new", "state": "pending"}
    assert headers["Content-Type"] == "application/json"
    [entry] = inbox.entries()
    assert (entry.request_id, entry.authenticated_by) == ("dsr-http-1", "hmac:default")
    assert entry.source == "http:127.0.0.1"
    assert woken == ["dsr-http-1"]


def test_a_duplicate_is_answered_200_and_counted(
    intake: HttpIntake, inbox: Inbox, woken: list[str]
) -> None:
    assert post(intake, signed())[0] == 202
    status, _, answer = post(intake, signed())
    assert (status, answer["status"], answer["state"]) == (200, "duplicate", "pending")
    assert inbox.entries()[0].deliveries == 2
    assert woken == ["dsr-http-1"]  # only a new request wakes the drain


def test_a_bearer_token_vouches_for_an_unsigned_request(intake: HttpIntake, inbox: Inbox) -> None:
    status, _, answer = post(intake, unsigned(), token=TOKEN)
    assert (status, answer["status"]) == (202, "new")
    assert inbox.entries()[0].authenticated_by == "bearer"
    # The scheme is case-insensitive, surrounding spaces do not count.
    again = raw_post(intake, unsigned(), f"  bearer   {TOKEN} ")
    assert again[0] == 200


def test_a_subject_request_is_accepted(intake: HttpIntake, inbox: Inbox) -> None:
    body = {k: v for k, v in REQUEST.items() if k != "record_ids"}
    assert post(intake, signed({**body, "subject_id": "subject-1-xyz"}))[0] == 202
    assert inbox.entries()[0].subject_hash is not None


def test_the_path_may_carry_a_query(intake: HttpIntake) -> None:
    body = json.dumps(signed()).encode()
    assert call(intake, "POST", f"{INTAKE_PATH}?source=crm", body)[0] == 202


# ----------------------------------------------------------------------------- refused
def refusals(inbox: Inbox) -> list[tuple[str, str]]:
    return [(r.source, r.kind) for r in inbox.rejections()]


@pytest.mark.parametrize(
    ("body", "status", "kind", "words"),
    [
        (b"{not json", 400, "malformed", "not JSON"),
        (b"[1, 2]", 400, "malformed", "must be a JSON object"),
        (b"\xff\xfe", 400, "malformed", "not UTF-8"),
        (json.dumps({**signed(), "extra": 1}).encode(), 400, "malformed", "Extra inputs"),
        (json.dumps(unsigned()).encode(), 401, "unsigned", "sign the request"),
        (json.dumps(signed(key="another-key")).encode(), 401, "forged", "does not match"),
    ],
    ids=["not JSON", "a list", "not UTF-8", "extra field", "unsigned", "another key"],
)
def test_a_bad_request_is_refused_recorded_and_explained(
    intake: HttpIntake,
    inbox: Inbox,
    woken: list[str],
    body: bytes,
    status: int,
    kind: str,
    words: str,
) -> None:
    answered, headers, answer = post(intake, body)
    assert answered == status
    assert answer["error"] == kind
    assert words in answer["detail"]
    assert set(answer) == {"error", "detail"}
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert refusals(inbox) == [("http:127.0.0.1", kind)]
    assert inbox.rejections()[0].reason == answer["detail"]
    assert inbox.entries() == []
    assert woken == []


def test_an_old_signature_is_refused_as_expired(intake: HttpIntake, inbox: Inbox) -> None:
    old = sign_request(REQUEST, KEY, signed_at=datetime.now(UTC) - timedelta(days=30))
    status, _, answer = post(intake, old)
    assert (status, answer["error"]) == (401, "expired")
    assert refusals(inbox) == [("http:127.0.0.1", "expired")]


@pytest.mark.parametrize(
    ("authorization", "envelope", "kind"),
    [
        ("Bearer wrong-token", unsigned(), "bad-token"),
        ("Bearer ", unsigned(), "bad-token"),
        (f"Basic {TOKEN}", unsigned(), "bad-token"),
        (TOKEN, unsigned(), "bad-token"),
        (f"Bearer {TOKEN}", signed(key="another-key"), "forged"),
    ],
    ids=["wrong token", "empty token", "basic scheme", "no scheme", "token on a forgery"],
)
def test_a_token_that_does_not_vouch_is_refused(
    intake: HttpIntake, inbox: Inbox, authorization: str, envelope: dict[str, Any], kind: str
) -> None:
    status, headers, answer = raw_post(intake, envelope, authorization)
    assert (status, answer["error"]) == (401, kind)
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert refusals(inbox) == [("http:127.0.0.1", kind)]
    assert TOKEN not in json.dumps(answer)


def test_a_token_is_refused_where_none_is_configured(inbox: Inbox) -> None:
    no_token = SETTINGS.model_copy(update={"request_bearer_token": None})
    with HttpIntake(inbox, no_token) as intake:
        status, _, answer = post(intake, unsigned(), token=TOKEN)
        assert (status, answer["error"]) == (401, "bad-token")
        assert post(intake, signed())[0] == 202  # signatures still work


def test_a_replay_with_changes_is_refused_409(intake: HttpIntake, inbox: Inbox) -> None:
    assert post(intake, signed())[0] == 202
    status, _, answer = post(intake, signed({**REQUEST, "record_ids": ["patient-1-xyz"]}))
    assert (status, answer["error"]) == (409, "replayed-with-changes")
    assert "dsr-http-1 was received before with other content" in answer["detail"]
    assert refusals(inbox) == [("http:127.0.0.1", "replayed-with-changes")]  # once
    assert inbox.entries()[0].deliveries == 1


def test_a_body_over_the_limit_is_refused_413_unread(intake: HttpIntake, inbox: Inbox) -> None:
    padded = json.dumps(signed()).encode()
    body = padded + b" " * (MAX_REQUEST_BYTES + 1 - len(padded))
    status, _, answer = post(intake, body)
    assert (status, answer["error"]) == (413, "too-large")
    assert answer["detail"] == ("invalid request: 1,048,577 bytes, more than the 1,048,576 allowed")
    # The limit is what is declared: the server answers before any byte of the body.
    head = f"POST {INTAKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * MAX_REQUEST_BYTES}"
    answer = exchange(intake, f"{head}\r\n\r\n".encode(), end=False)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" not in answer.lower()  # the server reads and drops the rest
    # Far past the limit, the connection ends with the answer instead.
    head = f"POST {INTAKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {10**12}\r\n\r\n"
    answer = exchange(intake, head.encode(), end=False)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer.lower()
    assert refusals(inbox) == [("http:127.0.0.1", "too-large")] * 3
    exact = padded + b" " * (MAX_REQUEST_BYTES - len(padded))
    assert post(intake, exact)[0] == 202


def exchange(intake: HttpIntake, data: bytes, *, end: bool = True) -> bytes:
    """Send raw bytes (then end the sending side, unless not `end`); read the whole answer."""
    host, port = intake.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as client:
        client.sendall(data)
        if end:
            client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
            if not end and b"\r\n\r\n" in answer:
                head, _, body = answer.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    return answer


def wait_for_refusals(inbox: Inbox, count: int) -> list[tuple[str, str]]:
    """The refusals, once `count` are recorded (the server records after the client left)."""
    deadline = time.monotonic() + 10
    while len(inbox.rejections()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return refusals(inbox)


def test_a_body_without_a_length_is_refused_411(intake: HttpIntake, inbox: Inbox) -> None:
    head = f"POST {INTAKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n"
    answer = exchange(intake, head.encode() + json.dumps(signed()).encode())
    assert answer.startswith(b"HTTP/1.1 411 ")
    assert b"Connection: close" in answer or b"connection: close" in answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "length-required"

    def chunks() -> Iterator[bytes]:
        yield json.dumps(signed()).encode()

    chunked = httpx.post(f"{intake.url}{INTAKE_PATH}", content=chunks(), timeout=30)
    assert chunked.request.headers["Transfer-Encoding"] == "chunked"
    assert (chunked.status_code, chunked.json()["error"]) == (411, "length-required")
    assert refusals(inbox) == [("http:127.0.0.1", "length-required")] * 2
    assert inbox.entries() == []


@pytest.mark.parametrize("length", ["abc", "-1", "+5", "1_0", "5, 6"])
def test_a_bad_content_length_is_refused_400_by_the_server(
    intake: HttpIntake, inbox: Inbox, length: str
) -> None:
    head = f"POST {INTAKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
    answer = exchange(intake, head.encode())
    # Not HTTP: uvicorn (h11) answers before the app, so there is no delivery to record.
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert length.encode() not in answer.partition(b"\r\n\r\n")[2]
    assert inbox.rejections() == []


def test_a_body_shorter_than_declared_is_recorded_as_malformed(
    intake: HttpIntake, inbox: Inbox
) -> None:
    head = f"POST {INTAKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    answer = exchange(intake, head.encode() + b"{}")  # the body ends after 2 of 100 bytes
    assert answer == b""  # the client ended the connection: nobody is left to answer
    assert wait_for_refusals(inbox, 1) == [("http:127.0.0.1", "malformed")]
    assert inbox.rejections()[0].reason == "invalid request: the body ended after 2 of 100 bytes"
    assert intake.received.counts() == ReceiveCounts(refused=1)


def test_a_body_that_does_not_arrive_is_refused_408(inbox: Inbox) -> None:
    with HttpIntake(inbox, SETTINGS, body_timeout=0.2) as intake:
        head = f"POST {INTAKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{{"
        answer = exchange(intake, head.encode(), end=False)  # the client waits; not the server
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"the body did not arrive within 0.2 s" in answer
    assert refusals(inbox) == [("http:127.0.0.1", "timeout")]


# ------------------------------------------------------------------------ other routes
def test_health_reports_the_inbox_counts(intake: HttpIntake) -> None:
    status, _, answer = call(intake, "GET", HEALTH_PATH)
    assert (status, answer) == (200, {"status": "ok", "inbox": {}})
    post(intake, signed())
    post(intake, b"nonsense")
    status, _, answer = call(intake, "GET", HEALTH_PATH)
    assert answer == {"status": "ok", "inbox": {"pending": 1, "rejected": 1}}


def test_health_says_when_the_inbox_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "inbox.db").write_bytes(b"not a database" * 100)
    with HttpIntake(Inbox(tmp_path / "inbox.db", SETTINGS), SETTINGS) as intake:
        status, _, answer = call(intake, "GET", HEALTH_PATH)
        assert (status, answer) == (503, {"status": "unavailable"})
        status, headers, answer = post(intake, signed())
        assert (status, answer["error"]) == (503, "unavailable")
        assert headers["Retry-After"] == "30"


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/", 404, None),
        ("POST", "/v1/deletion-request", 404, None),
        ("POST", "/v1/deletion-requests/", 404, None),
        ("GET", INTAKE_PATH, 405, "POST"),
        ("PUT", INTAKE_PATH, 405, "POST"),
        ("DELETE", INTAKE_PATH, 405, "POST"),
        ("POST", HEALTH_PATH, 405, "GET"),
        ("PATCH", HEALTH_PATH, 405, "GET"),
        ("HEAD", INTAKE_PATH, 405, "POST"),
    ],
)
def test_other_paths_and_methods_are_refused_and_not_recorded(
    intake: HttpIntake,
    inbox: Inbox,
    method: str,
    path: str,
    status: int,
    allow: str | None,
) -> None:
    body = json.dumps(signed()).encode() if method in ("POST", "PUT") else None
    answered, headers, answer = call(intake, method, path, body)
    assert answered == status
    assert headers.get("Allow") == allow
    if method != "HEAD":
        assert answer["error"] == ("not-found" if status == 404 else "method-not-allowed")
    assert inbox.rejections() == []
    assert inbox.entries() == []


def test_odd_methods_and_broken_requests_echo_nothing(intake: HttpIntake, inbox: Inbox) -> None:
    answer = exchange(intake, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"server: unlearn-ops-intake\r\n" in answer.lower()
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"] == "not-found"
    answer = exchange(intake, b"GET /token-in-the-path HTTP/9.9\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404 ")
    assert b"9.9" not in answer
    assert b"token" not in answer  # nothing of the request is echoed
    # Not HTTP at all (a TLS hello, say): the server answers 400 before the app.
    answer = exchange(intake, b"\x16\x03\x01 token-in-a-hello\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"token" not in answer
    assert inbox.rejections() == []


def test_urllib_clients_see_the_same_answers(intake: HttpIntake) -> None:
    request = urllib.request.Request(
        f"{intake.url}{INTAKE_PATH}",
        data=json.dumps(unsigned()).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert (response.status, json.load(response)["status"]) == (202, "new")
    request.remove_header("Authorization")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    with caught.value as error:
        assert error.code == 401
        assert json.load(error)["error"] == "unsigned"


# ------------------------------------------------------------------------- concurrency
def test_concurrent_posts_record_each_request_once(intake: HttpIntake, inbox: Inbox) -> None:
    envelopes = [signed({**REQUEST, "request_id": f"dsr-burst-{n}"}) for n in range(5)]
    barrier = threading.Barrier(20)
    statuses: list[int] = []
    lock = threading.Lock()

    def deliver(n: int) -> None:
        barrier.wait(timeout=30)
        status = post(intake, envelopes[n % 5])[0]
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert Counter(statuses) == {202: 5, 200: 15}
    entries = inbox.entries()
    assert sorted(e.request_id for e in entries) == [f"dsr-burst-{n}" for n in range(5)]
    assert {e.deliveries for e in entries} == {4}


# ------------------------------------------------------------------------------ logs
def test_logs_hold_method_path_and_status_but_no_token_or_body(
    intake: HttpIntake, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    envelope = signed()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        post(intake, unsigned({**REQUEST, "request_id": "dsr-token"}), token=TOKEN)
        post(intake, unsigned(), token="wrong-" + TOKEN)
        post(intake, envelope)
        call(intake, "GET", f"{HEALTH_PATH}?token={TOKEN}")
        post(intake, b"\xff" + TOKEN.encode())
        exchange(intake, b"\x16\x03\x01 not http\r\n\r\n")
    # A status is logged as it is sent, so before the client reads it.
    lines = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert f"POST {INTAKE_PATH} 202" in lines
    assert f"POST {INTAKE_PATH} 401" in lines
    assert f"GET {HEALTH_PATH} 200" in lines
    text = "\n".join(lines)
    for secret in (TOKEN, KEY, envelope["signature"]["value"], "patient-", "GDPR"):
        assert secret not in text
    out, err = capfd.readouterr()
    assert TOKEN not in out + err
    assert "HTTP/1" not in err  # uvicorn's own access log (with the query): not used
    assert "Invalid HTTP" not in err  # uvicorn's warnings never reach stderr by themselves


def test_a_failing_callback_is_logged_and_the_request_stays_accepted(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    def wake(request_id: str) -> None:
        raise RuntimeError(f"drain is down (asked for {request_id})")

    with (
        caplog.at_level(logging.ERROR, logger=LOGGER),
        HttpIntake(inbox, SETTINGS, on_accepted=wake) as intake,
    ):
        assert post(intake, signed())[0] == 202
        assert post(intake, signed())[0] == 200
    assert [e.request_id for e in inbox.entries()] == ["dsr-http-1"]
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "on_accepted(dsr-http-1) failed with RuntimeError" in record.getMessage()
    assert "(asked for dsr-http-1)" not in record.getMessage()  # not the message


# ---------------------------------------------------------------------------- lifecycle
def test_construction_binds_nothing_and_start_stop_are_idempotent(inbox: Inbox) -> None:
    intake = HttpIntake(inbox, SETTINGS, port=0)
    assert not intake.running
    assert intake.url == "http://127.0.0.1:0"
    intake.stop()  # before start: nothing to do
    assert intake.start() is intake
    try:
        port = int(intake.url.rsplit(":", 1)[1])
        assert port > 0
        assert intake.start().url == intake.url  # already serving
        assert intake.running
        assert "127.0.0.1" in repr(intake)
    finally:
        intake.stop()
    intake.stop()
    assert not intake.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not inbox.path.exists()  # nothing was asked of the inbox


def test_a_port_in_use_is_a_config_error(inbox: Inbox) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            HttpIntake(inbox, SETTINGS, port=port).start()


def test_a_port_past_65535_is_a_config_error(inbox: Inbox) -> None:
    with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:70000"):
        HttpIntake(inbox, SETTINGS, port=70000).start()


def test_ipv6_urls_are_bracketed(inbox: Inbox) -> None:
    assert HttpIntake(inbox, SETTINGS, host="::1", port=8080).url == "http://[::1]:8080"


# ---------------------------------------------------------------------------- outcomes
def test_every_delivery_is_counted_by_its_outcome(intake: HttpIntake) -> None:
    assert post(intake, signed())[0] == 202
    assert post(intake, signed())[0] == 200
    assert post(intake, unsigned())[0] == 401
    assert post(intake, b"{broken")[0] == 400
    assert post(intake, signed({**REQUEST, "record_ids": ["patient-9-xyz"]}))[0] == 409
    assert call(intake, "GET", "/elsewhere")[0] == 404  # not a delivery
    assert call(intake, "GET", HEALTH_PATH)[0] == 200
    assert intake.received.counts() == ReceiveCounts(accepted=1, duplicates=1, refused=3)


def test_the_app_answers_in_process_too(inbox: Inbox) -> None:
    """The Starlette app without a server: httpx's ASGI transport calls it directly."""
    import asyncio

    from unlearn_ops.adapters.http.app import build_app

    seen: list[str] = []
    app = build_app(inbox, SETTINGS, on_outcome=lambda outcome: seen.append(type(outcome).__name__))

    async def exchange_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            return [
                await client.post(INTAKE_PATH, content=json.dumps(signed()).encode()),
                await client.post(INTAKE_PATH, content=json.dumps(signed()).encode()),
                await client.get(INTAKE_PATH),
                await client.post(f"{INTAKE_PATH}/"),
            ]

    created, again, wrong_method, elsewhere = asyncio.run(exchange_all())
    assert (created.status_code, created.json()["status"]) == (202, "new")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert (wrong_method.status_code, wrong_method.headers["Allow"]) == (405, "POST")
    assert wrong_method.json()["error"] == "method-not-allowed"
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (404, "not-found")
    assert seen == ["Accepted", "Duplicate"]
    assert inbox.entries()[0].source == "http:10.0.0.7"

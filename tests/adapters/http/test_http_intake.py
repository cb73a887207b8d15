"""The HTTP intake: a real server on 127.0.0.1 (a free port), real clients (http.client).

Each answer of the table in the module's docstring, the refusals recorded in the inbox,
bearer tokens, concurrency, and logs that hold neither the token nor the body.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from unlearn_ops.adapters.http import intake as http_intake
from unlearn_ops.adapters.http.intake import HEALTH_PATH, INTAKE_PATH, HttpIntake
from unlearn_ops.deletion.envelope import MAX_REQUEST_BYTES, sign_request
from unlearn_ops.deletion.inbox import Inbox
from unlearn_ops.errors import ConfigError
from unlearn_ops.settings import Settings

KEY = "sk-test-http-5d21"
TOKEN = "tok-test-http-e0f4"
SETTINGS = Settings(
    request_signing_key=SecretStr(KEY),
    request_bearer_token=SecretStr(TOKEN),
    id_hash_key=SecretStr("idk-test-http-hash-key"),
)
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
    *,
    length: bool = True,
) -> Answer:
    """One request on its own connection; (status, headers, JSON body)."""
    host, port = intake.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None and length:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        if body:
            connection.send(body)
        response = connection.getresponse()
        raw = response.read()
        return response.status, dict(response.headers), json.loads(raw) if raw else {}
    finally:
        connection.close()


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
    again = post(intake, unsigned(), Authorization=f"  bearer   {TOKEN} ")
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
    status, headers, answer = post(intake, envelope, Authorization=authorization)
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
    status, _, _ = call(
        intake, "POST", INTAKE_PATH, None, {"Content-Length": str(10 * MAX_REQUEST_BYTES)}
    )
    assert status == 413
    assert refusals(inbox) == [("http:127.0.0.1", "too-large")] * 2
    exact = padded + b" " * (MAX_REQUEST_BYTES - len(padded))
    assert post(intake, exact)[0] == 202


def test_a_body_without_a_length_is_refused_411(intake: HttpIntake, inbox: Inbox) -> None:
    body = json.dumps(signed()).encode()
    status, _, answer = call(intake, "POST", INTAKE_PATH, body, length=False)
    assert (status, answer["error"]) == (411, "length-required")
    chunked = call(intake, "POST", INTAKE_PATH, None, {"Transfer-Encoding": "chunked"})
    assert chunked[0] == 411
    assert refusals(inbox) == [("http:127.0.0.1", "length-required")] * 2
    assert inbox.entries() == []


@pytest.mark.parametrize("length", ["abc", "-1", "+5", "1_0", "5, 6"])
def test_a_bad_content_length_is_refused_400(intake: HttpIntake, inbox: Inbox, length: str) -> None:
    status, _, answer = call(intake, "POST", INTAKE_PATH, None, {"Content-Length": length})
    assert (status, answer["error"]) == (400, "malformed")
    assert refusals(inbox) == [("http:127.0.0.1", "malformed")]


def exchange(intake: HttpIntake, data: bytes) -> bytes:
    """Send raw bytes, end the sending side, and read the whole answer."""
    host, port = intake.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def test_a_body_shorter_than_declared_is_refused_400(intake: HttpIntake, inbox: Inbox) -> None:
    head = f"POST {INTAKE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    answer = exchange(intake, head.encode() + b"{}")  # the body ends after 2 of 100 bytes
    assert answer.startswith(b"HTTP/1.0 400 ")
    assert b"the body ended after 2 of 100 bytes" in answer
    assert refusals(inbox) == [("http:127.0.0.1", "malformed")]


def test_a_body_that_does_not_arrive_is_refused_408(
    intake: HttpIntake, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_intake._Handler, "timeout", 0.2)
    host, port = intake.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as client:
        client.sendall(f"POST {INTAKE_PATH} HTTP/1.1\r\nContent-Length: 10\r\n\r\n{{".encode())
        answer = client.recv(65536)  # the client waits; the server does not
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 408 ")
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


def test_a_broken_request_line_gets_a_json_answer(intake: HttpIntake) -> None:
    answer = exchange(intake, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 501 Not Implemented\r\nServer: unlearn-ops-intake\r\n")
    body = answer.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["error"] == "not-implemented"
    # Before the version is known, http.server answers as to HTTP/0.9: the body alone.
    answer = exchange(intake, b"GET /token-in-the-path HTTP/9.9\r\n\r\n")
    assert json.loads(answer)["error"] == "http-version-not-supported"
    assert b"9.9" not in answer
    assert b"token" not in answer  # nothing of the request is echoed


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
    assert "HTTP/1" not in err  # http.server's own access log goes to stderr: not used


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

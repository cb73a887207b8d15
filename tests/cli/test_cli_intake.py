"""The intake commands (sign, submit, inbox, listen, serve): bad inputs and the quick paths."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from unlearn_ops.deletion.envelope import MAX_REQUEST_BYTES, sign_request, verify_request
from unlearn_ops.settings import Settings

if TYPE_CHECKING:
    from tests.conftest import CliRunner

KEY = "cli-intake-signing-key"


@pytest.fixture
def workspace(tmp_path: Path, cli: CliRunner) -> Path:
    code, _, err = cli(["init", str(tmp_path / "ws"), "--shards", "2", "--slices", "2"])
    assert code == 0, err
    return tmp_path / "ws"


@pytest.fixture
def request_file(tmp_path: Path) -> Path:
    path = tmp_path / "request.json"
    path.write_text(
        json.dumps({"request_id": "dsr-1", "record_ids": ["17", 42], "reason": "GDPR art. 17"})
    )
    return path


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_sign_makes_an_envelope_the_intake_accepts(
    cli: CliRunner, request_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", KEY)
    code, out, err = cli(["sign", str(request_file)])
    assert code == 0, err
    envelope = json.loads(out)
    verified = verify_request(envelope, Settings(request_signing_key=KEY))  # type: ignore[arg-type]
    assert verified.body.record_ids == ("17", "42")
    # requested_at was not in the file: it is filled in with the time of signing.
    assert abs((datetime.now(UTC) - verified.body.requested_at).total_seconds()) < 60
    assert KEY not in out


def test_sign_with_a_producer_key_names_the_key_and_its_producer(
    cli: CliRunner, request_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"crm": {"crm-2026-11": {"secret": "crm-secret-0123456789"}}}))
    keys.chmod(0o600)
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_KEYS_FILE", str(keys))
    code, out, err = cli(["sign", str(request_file), "--key-id", "crm-2026-11"])
    assert code == 0, err
    envelope = json.loads(out)
    assert envelope["signature"]["producer"] == "crm"
    verified = verify_request(envelope, Settings(request_keys_file=keys))
    assert (verified.producer, verified.key_id) == ("crm", "crm-2026-11")
    assert "crm-secret" not in out + err
    code, _, err = cli(["sign", str(request_file), "--key-id", "desk-9"])
    assert code == 2
    assert one_error_line(err) == (
        "error: key id 'desk-9' is not in UNLEARN_OPS_REQUEST_KEYS_FILE; keys: crm-2026-11"
    )


def test_sign_without_a_key_is_one_error(
    cli: CliRunner, request_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", raising=False)
    code, out, err = cli(["sign", str(request_file)])
    assert code == 2
    assert out == ""
    assert "UNLEARN_OPS_REQUEST_SIGNING_KEY is not set" in one_error_line(err)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{nope", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"request_id": "a..b", "record_ids": ["1"], "reason": "x"}', "request.request_id"),
        ('{"request_id": "r", "reason": "x"}', "exactly one of record_ids and subject_id"),
    ],
)
def test_sign_refuses_what_the_intake_would_refuse(
    cli: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: str,
    message: str,
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", KEY)
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, out, err = cli(["sign", str(path)])
    assert code == 2
    assert out == ""
    assert message in one_error_line(err)


def test_sign_a_missing_file(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", KEY)
    code, _, err = cli(["sign", str(tmp_path / "absent.json")])
    assert code == 2
    assert "cannot read" in one_error_line(err)


def test_submit_names_the_allowed_ways(cli: CliRunner, workspace: Path, request_file: Path) -> None:
    code, _, err = cli(
        ["submit", str(request_file), "--via", "carrier-pigeon", "-w", str(workspace)]
    )
    assert code == 2
    assert "--via must be s3 or event" in one_error_line(err)


@pytest.fixture
def envelope_file(tmp_path: Path, request_file: Path) -> Path:
    from unlearn_ops.deletion.envelope import sign_request

    request = json.loads(request_file.read_text()) | {"requested_at": "2026-11-20T09:30:00Z"}
    path = tmp_path / "signed.json"
    path.write_text(json.dumps(sign_request(request, KEY)))
    return path


def test_submit_via_s3_needs_the_intake_settings(
    cli: CliRunner, workspace: Path, envelope_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNLEARN_OPS_INTAKE_BUCKET", raising=False)
    code, _, err = cli(["submit", str(envelope_file), "--via", "s3", "-w", str(workspace)])
    assert code == 2
    assert "UNLEARN_OPS_INTAKE_BUCKET" in one_error_line(err)


@pytest.mark.parametrize("key", [None, KEY])
def test_submit_refuses_what_the_intake_would_refuse(
    cli: CliRunner,
    workspace: Path,
    request_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    key: str | None,
) -> None:
    # A bare request (not signed), with or without a key to check signatures here.
    monkeypatch.setenv("UNLEARN_OPS_INTAKE_BUCKET", "never-reached")
    if key is None:
        monkeypatch.delenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", raising=False)
    else:
        monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", key)
    code, out, err = cli(["submit", str(request_file), "--via", "s3", "-w", str(workspace)])
    assert code == 2
    assert out == ""
    assert "version: Field required" in one_error_line(err)


def test_submit_refuses_a_forged_envelope(
    cli: CliRunner, workspace: Path, envelope_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", KEY)
    envelope = json.loads(envelope_file.read_text())
    envelope["request"]["record_ids"] = ["99"]
    envelope_file.write_text(json.dumps(envelope))
    code, _, err = cli(["submit", str(envelope_file), "--via", "event", "-w", str(workspace)])
    assert code == 2
    assert "unauthenticated request (forged)" in one_error_line(err)


def test_inbox_of_a_new_workspace_is_empty(cli: CliRunner, workspace: Path) -> None:
    code, out, err = cli(["inbox", "-w", str(workspace), "--json"])
    assert code == 0, err
    assert json.loads(out) == {"counts": {}, "requests": [], "rejected": []}


def test_inbox_retry_of_an_unknown_request(cli: CliRunner, workspace: Path) -> None:
    code, _, err = cli(["inbox", "--retry", "nope", "-w", str(workspace)])
    assert code == 2
    assert "'nope'" in one_error_line(err)


def test_listen_with_nothing_to_listen_to(
    cli: CliRunner, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("UNLEARN_OPS_INTAKE_BUCKET", "UNLEARN_OPS_INTAKE_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = cli(["listen", "--once", "-w", str(workspace)])
    assert code == 2
    assert "nothing to listen to" in one_error_line(err)


@pytest.mark.parametrize("address", ["no-port", "127.0.0.1:99999", "[::1]:x"])
def test_listen_refuses_a_bad_http_address(cli: CliRunner, workspace: Path, address: str) -> None:
    code, _, err = cli(["listen", "--once", "--http", address, "-w", str(workspace)])
    assert code == 2
    assert "--http must be HOST:PORT" in one_error_line(err)


def test_serve_needs_a_prefect_server(
    cli: CliRunner, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    code, _, err = cli(["serve", "-w", str(workspace)])
    assert code == 2
    assert "PREFECT_API_URL is not set" in one_error_line(err)


def test_listen_without_a_workspace(cli: CliRunner, tmp_path: Path) -> None:
    code, _, err = cli(["listen", "--once", "-w", str(tmp_path / "none")])
    assert code == 2
    assert "no workspace" in one_error_line(err)


def test_listen_summary_counts_what_came_over_http(workspace: Path) -> None:
    """Issue 11, finding 5: one request served, four refused, two duplicates, then SIGTERM.

    The installed console script in a subprocess, as a user runs it; the window is long,
    so the accepted request waits in the inbox for the next drain instead of training.
    """
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("UNLEARN_OPS_INTAKE_")},
        "PYTHONPATH": str(Path(__file__).parents[2]),
        "UNLEARN_OPS_REQUEST_SIGNING_KEY": KEY,
        "UNLEARN_OPS_COALESCE_SECONDS": "3600",
    }
    script = Path(sys.executable).parent / "unlearn-ops"
    argv = ["listen", "--http", "127.0.0.1:0", "--wait-seconds", "1", "-w", str(workspace)]
    listener = subprocess.Popen(
        [str(script), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert listener.stderr is not None
        line = listener.stderr.readline()
        assert line.startswith("HTTP intake on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].strip() + "/v1/deletion-requests"
        body = {
            "request_id": "dsr-listen-1",
            "record_ids": ["17"],
            "reason": "GDPR art. 17",
            "requested_at": "2026-11-20T09:30:00+00:00",
        }
        good = json.dumps(sign_request(body, KEY)).encode()
        statuses = [
            httpx.post(url, content=data, timeout=30).status_code
            for data in (
                good,
                good,
                good,
                json.dumps({"version": 1, "request": body}).encode(),
                json.dumps(sign_request(body, "another-key")).encode(),
                b"{not json",
                b" " * (MAX_REQUEST_BYTES + 1),
            )
        ]
        assert statuses == [202, 200, 200, 401, 401, 400, 413]
    finally:
        listener.send_signal(signal.SIGTERM)
        out, err = listener.communicate(timeout=120)
    assert listener.returncode == 0, err
    assert out.splitlines()[-1] == (
        "accepted 1, duplicates 2, refused 4; 0 drain(s), 0 retraining run(s)"
    )

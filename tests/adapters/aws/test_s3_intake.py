"""The S3/SQS intake against moto's real HTTP server: files in, inbox entries out.

One moto server for the module; every test gets its own bucket, queue and notification
configuration, so tests share nothing but the server. Nothing is mocked: boto3 talks HTTP
to moto, and requests are recorded in a real sqlite inbox.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto.server import ThreadedMotoServer
from pydantic import SecretStr

from unlearn_ops.adapters.aws.s3_intake import PollReport, S3Intake
from unlearn_ops.deletion.envelope import MAX_REQUEST_BYTES, sign_request
from unlearn_ops.deletion.inbox import Inbox
from unlearn_ops.errors import ConfigError, InvalidRequestError
from unlearn_ops.settings import Settings

SIGNING_KEY = "intake-test-signing-key"
PREFIX = "deletion-requests/"
REJECTED = "rejected/"
CREDENTIALS = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}

pytestmark = pytest.mark.servers  # moto's S3 and SQS server on loopback


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto's S3 + SQS server on a free loopback port."""
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)  # one INFO line per HTTP request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        werkzeug.setLevel(level)


@pytest.fixture(scope="module")
def clients(endpoint: str) -> tuple[Any, Any]:
    """(s3, sqs) clients talking to the server."""
    return (
        boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS),
        boto3.client("sqs", endpoint_url=endpoint, **CREDENTIALS),
    )


@pytest.fixture
def settings() -> Settings:
    """A signing key and an id hash key of the tests' own."""
    return Settings(
        request_signing_key=SecretStr(SIGNING_KEY), id_hash_key=SecretStr("intake-test-id-key")
    )


@dataclass
class Env:
    """One test's bucket, queue, intake and inbox."""

    intake: S3Intake
    inbox: Inbox
    settings: Settings
    s3: Any
    sqs: Any
    bucket: str
    queue_url: str
    inbox_path: Path

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under `prefix`."""
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def queue_depth(self) -> tuple[int, int]:
        """(visible, in flight) messages."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def drain(self, inbox: Inbox | None = None, **options: Any) -> PollReport:
        """Poll until a receive returns nothing; the reports summed."""
        total = PollReport()
        for _ in range(20):
            report = self.intake.poll(inbox or self.inbox, self.settings, wait_seconds=0, **options)
            total += report
            if report.messages == 0:
                return total
        raise AssertionError(f"the queue did not drain: {total}")

    def inbox_bytes(self) -> bytes:
        """The inbox database as stored: the main file, its WAL and shared memory."""
        return b"".join(path.read_bytes() for path in self.inbox_path.parent.glob("inbox.sqlite*"))


@pytest.fixture
def env(clients: tuple[Any, Any], settings: Settings, tmp_path: Path) -> Env:
    """A fresh bucket whose object-created notifications under the prefix go to a fresh queue."""
    s3, sqs = clients
    name = f"intake-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": PREFIX}]}},
                }
            ]
        },
    )
    intake = S3Intake(name, PREFIX, REJECTED, queue_url, s3=s3, sqs=sqs)
    inbox_path = tmp_path / "inbox" / "inbox.sqlite"
    return Env(intake, Inbox(inbox_path, settings), settings, s3, sqs, name, queue_url, inbox_path)


def envelope(
    request_id: str,
    record_ids: list[str],
    *,
    key: str = SIGNING_KEY,
    signed_at: datetime | None = None,
) -> dict[str, Any]:
    """A signed request to forget `record_ids`."""
    return sign_request(
        {
            "request_id": request_id,
            "record_ids": record_ids,
            "reason": "GDPR art. 17",
            "requested_at": "2026-11-20T09:30:00+00:00",
        },
        key,
        signed_at=signed_at,
    )


def test_a_signed_file_is_recorded_then_deleted(env: Env, settings: Settings) -> None:
    secrets = ["rec-4711-secret", "rec-0815-secret"]
    key = env.intake.submit(envelope("dsr-1", secrets))
    assert key == f"{PREFIX}dsr-1.json"

    report = env.drain()

    assert report.errors == []
    assert (report.accepted, report.duplicates, report.rejected, report.skipped) == (1, 0, 0, 1)
    assert report.accepted_ids == ["dsr-1"]
    [entry] = env.inbox.entries("pending")
    assert entry.request_id == "dsr-1"
    assert list(entry.record_hashes) == sorted(settings.hash_record_id(r) for r in secrets)
    assert entry.source == f"s3://{env.bucket}/{key}"
    assert entry.authenticated_by == "hmac:default"
    stored = env.inbox_bytes()
    assert stored
    assert all(secret.encode() not in stored for secret in secrets)
    assert env.keys() == []  # the file held raw ids
    assert env.queue_depth() == (0, 0)
    assert env.inbox.rejections() == []


def test_the_test_event_is_skipped(env: Env) -> None:
    report = env.intake.poll(env.inbox, env.settings, wait_seconds=0)

    assert report.to_dict() == {
        "messages": 1,
        "accepted": 0,
        "duplicates": 0,
        "rejected": 0,
        "skipped": 1,
        "gone": 0,
        "errors": [],
        "accepted_ids": [],
    }
    assert env.queue_depth() == (0, 0)
    assert env.inbox.entries() == []
    assert env.inbox.rejections() == []


def _unsigned() -> bytes:
    signed = envelope("dsr-unsigned", ["rec-1"])
    del signed["signature"]
    return json.dumps(signed).encode()


REFUSED_FILES: dict[str, tuple[str, Any]] = {
    "forged": ("forged", lambda: envelope("dsr-forged", ["rec-1"], key="another-key")),
    "unsigned": ("unsigned", _unsigned),
    "malformed": ("malformed", lambda: b'{"version": 1, "request": '),
    "oversized": ("oversized", lambda: b'{"pad": "' + b"x" * MAX_REQUEST_BYTES + b'"}'),
    "expired": (
        "expired",
        lambda: envelope("dsr-expired", ["rec-1"], signed_at=datetime.now(UTC) - timedelta(days=8)),
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_FILES))
def test_a_refused_file_is_moved_with_its_reason(env: Env, case: str) -> None:
    kind, make = REFUSED_FILES[case]
    content = make()
    key = env.intake.submit(content, key=f"{case}.json")
    if isinstance(content, bytes):
        submitted = content
    else:
        body = env.s3.get_object(Bucket=env.bucket, Key=key)["Body"]
        with body:
            submitted = body.read()

    report = env.drain()

    assert report.errors == []
    assert (report.accepted, report.rejected) == (0, 1)
    moved = f"{REJECTED}{case}.json"
    assert env.keys() == [moved, f"{moved}.reason.json"]
    body = env.s3.get_object(Bucket=env.bucket, Key=moved)["Body"]
    with body:
        assert body.read() == submitted
    [reason] = env.intake.rejected()
    assert reason["kind"] == kind
    assert reason["key"] == moved
    assert reason["source"] == f"s3://{env.bucket}/{key}"
    assert reason["reason"]
    assert "\n" not in reason["reason"]
    assert SIGNING_KEY not in json.dumps(reason)
    datetime.fromisoformat(reason["at"])
    assert env.inbox.entries() == []
    [rejection] = env.inbox.rejections()
    assert (rejection.kind, rejection.source) == (kind, f"s3://{env.bucket}/{key}")
    assert env.queue_depth() == (0, 0)


def test_a_refused_file_dropped_again_is_recorded_once(env: Env) -> None:
    forged = envelope("dsr-forged", ["rec-1"], key="another-key")
    env.intake.submit(forged)
    env.drain()
    env.intake.submit(forged)  # the same bytes at the same key: the same delivery id

    report = env.drain()

    assert (report.rejected, report.errors) == (1, [])
    assert len(env.inbox.rejections()) == 1
    assert env.keys() == [f"{REJECTED}dsr-forged.json", f"{REJECTED}dsr-forged.json.reason.json"]


def test_a_replay_with_changes_is_refused_and_the_first_request_stands(
    env: Env, settings: Settings
) -> None:
    env.intake.submit(envelope("dsr-7", ["rec-a"]))
    assert env.drain().accepted_ids == ["dsr-7"]
    env.intake.submit(envelope("dsr-7", ["rec-b"]), key="dsr-7-again.json")

    report = env.drain()

    assert report.errors == []
    assert (report.accepted, report.duplicates, report.rejected) == (0, 0, 1)
    [entry] = env.inbox.entries()
    assert list(entry.record_hashes) == [settings.hash_record_id("rec-a")]
    [rejection] = env.inbox.rejections()  # recorded once, by the inbox itself
    assert (rejection.kind, rejection.request_id) == ("replayed-with-changes", "dsr-7")
    [reason] = env.intake.rejected()
    assert reason["kind"] == "replayed-with-changes"
    assert reason["request_id"] == "dsr-7"
    assert reason["key"] == f"{REJECTED}dsr-7-again.json"
    assert env.keys(PREFIX) == []
    assert env.queue_depth() == (0, 0)


def test_a_request_dropped_twice_is_one_entry(env: Env) -> None:
    signed = envelope("dsr-2", ["rec-1", "rec-2"])
    env.intake.submit(signed)
    env.intake.submit(signed, key="copy-of-dsr-2.json")

    report = env.drain()

    assert report.errors == []
    assert (report.accepted, report.duplicates, report.rejected) == (1, 1, 0)
    [entry] = env.inbox.entries()
    assert (entry.request_id, entry.deliveries) == ("dsr-2", 2)
    assert env.keys() == []
    assert env.queue_depth() == (0, 0)


def test_keys_with_spaces_and_unicode(env: Env) -> None:
    key = f"{PREFIX}Anträge 2026/dsr 3+ü (copy).json"
    env.intake.submit(envelope("dsr-3", ["rec-9"]), key=key)
    env.intake.submit(b"not json", key=f"{PREFIX}Anträge 2026/bad file ü.json")

    report = env.drain()

    assert report.errors == []
    assert (report.accepted, report.rejected) == (1, 1)
    [entry] = env.inbox.entries()
    assert entry.source == f"s3://{env.bucket}/{key}"
    assert env.keys() == [
        f"{REJECTED}Anträge 2026/bad file ü.json",
        f"{REJECTED}Anträge 2026/bad file ü.json.reason.json",
    ]


def test_an_inbox_failure_keeps_the_message_and_the_file(
    env: Env, tmp_path: Path, settings: Settings
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    broken = Inbox(blocker / "inbox.sqlite", settings)
    key = env.intake.submit(envelope("dsr-4", ["rec-4"]))

    report = env.intake.poll(broken, settings, wait_seconds=0, visibility_timeout=1)

    assert report.messages == 2  # the test event, and the file's notification
    assert report.accepted == 0
    [error] = report.errors
    assert "StoreError" in error
    assert key in error
    assert env.keys() == [key]
    assert env.queue_depth() == (0, 1)
    time.sleep(1.3)
    assert env.queue_depth() == (1, 0)

    retried = env.intake.poll(env.inbox, settings, wait_seconds=1)

    assert (retried.messages, retried.accepted, retried.errors) == (1, 1, [])
    assert [entry.request_id for entry in env.inbox.entries()] == ["dsr-4"]
    assert env.keys() == []
    assert env.queue_depth() == (0, 0)


@pytest.mark.parametrize("body", ["nope", '{"hello": "world"}', '{"Records": "many"}'])
def test_a_message_that_is_not_a_notification_is_rejected(env: Env, body: str) -> None:
    env.drain()  # the test event
    message_id = env.sqs.send_message(QueueUrl=env.queue_url, MessageBody=body)["MessageId"]

    report = env.drain()

    assert (report.messages, report.rejected, report.errors) == (1, 1, [])
    [rejection] = env.inbox.rejections()
    assert (rejection.source, rejection.kind) == (f"sqs:{message_id}", "malformed-notification")
    assert env.queue_depth() == (0, 0)


def _notification(bucket: str, key: str, event: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event,
        "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key), "size": 1}},
    }


def test_records_elsewhere_are_skipped_and_a_handled_file_is_gone(env: Env) -> None:
    key = env.intake.submit(envelope("dsr-5", ["rec-5"]))
    assert env.drain().accepted_ids == ["dsr-5"]
    records = [
        _notification(env.bucket, key),  # redelivered: handled and deleted before
        _notification("another-bucket", key),
        _notification(env.bucket, "elsewhere/dsr-6.json"),
        _notification(env.bucket, f"{REJECTED}dsr-6.json"),
        _notification(env.bucket, key, event="ObjectRemoved:Delete"),
    ]
    env.sqs.send_message(QueueUrl=env.queue_url, MessageBody=json.dumps({"Records": records}))

    report = env.drain()

    assert (report.messages, report.gone, report.skipped, report.errors) == (1, 1, 4, [])
    assert len(env.inbox.entries()) == 1
    assert env.queue_depth() == (0, 0)


def test_submit_keys(env: Env) -> None:
    signed = envelope("dsr-8", ["rec-8"])
    assert env.intake.submit(json.dumps(signed).encode()) == f"{PREFIX}dsr-8.json"
    assert env.intake.submit(signed, key="sub/x.json") == f"{PREFIX}sub/x.json"
    assert env.intake.submit(signed, key=f"{PREFIX}y.json") == f"{PREFIX}y.json"
    with pytest.raises(InvalidRequestError, match="request id"):
        env.intake.submit(b"not json")
    assert env.keys() == [f"{PREFIX}dsr-8.json", f"{PREFIX}sub/x.json", f"{PREFIX}y.json"]


def test_from_settings(
    env: Env, endpoint: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    configured = settings.model_copy(
        update={"intake_bucket": env.bucket, "intake_queue_url": env.queue_url}
    )
    intake = S3Intake.from_settings(configured, endpoint_url=endpoint)
    intake.submit(envelope("dsr-9", ["rec-9"]))

    report = intake.poll(env.inbox, configured, wait_seconds=0)

    assert (report.accepted_ids, report.errors) == (["dsr-9"], [])
    with pytest.raises(ConfigError, match="UNLEARN_OPS_INTAKE_BUCKET"):
        S3Intake.from_settings(settings)


def test_prefixes_are_checked() -> None:
    with pytest.raises(ConfigError, match="rejected prefix"):
        S3Intake("bucket", "requests/", "requests/", "http://queue")
    with pytest.raises(ConfigError, match="rejected prefix"):
        S3Intake("bucket", "requests/", "", "http://queue")

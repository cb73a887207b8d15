"""The S3/SQS intake: request files dropped in a bucket, announced on a queue, recorded.

A privacy system writes signed request files (see :mod:`unlearn_ops.deletion.envelope`) under
``s3://BUCKET/PREFIX``; the bucket's ``s3:ObjectCreated:*`` notifications go to an SQS
queue. :meth:`S3Intake.poll` receives a batch of notifications and, for each file:

1. ``head_object``: a file over :data:`~unlearn_ops.deletion.envelope.MAX_REQUEST_BYTES` is refused
   as ``oversized`` without being downloaded;
2. ``get_object`` (at most that many bytes are read) and
   :func:`~unlearn_ops.deletion.receive.receive` (verify, then record the request or the
   refusal): the request is durable when it returns;
3. the file is deleted: it holds raw record ids, and the inbox keeps only keyed hashes.

A refused file (malformed, oversized, unsigned, forged, expired, replayed with changes) is
moved under the rejected prefix with a ``<key>.reason.json`` beside it
(``{"kind", "reason", "at", "source", "request_id"}``), and the refusal is recorded in the
inbox. The reason is the error's message, which never holds a secret.

Delivery is at least once, the effect exactly once. The SQS message is deleted only after
every record in it was handled; any other failure (S3 or SQS errors, an inbox that cannot
be written) leaves it on the queue, to be received again after its visibility timeout, and
is reported in :attr:`PollReport.errors`, never raised. Every step is safe to repeat:

- a file accepted before is a duplicate (the inbox says so), then deleted again;
- an object already deleted (or moved) is ``gone``, which is fine;
- a refusal is recorded once per file version: its delivery id
  (``s3://bucket/key#etag``) is remembered by the inbox, and a retry that finds it does
  not record the refusal again (so an identical file dropped again at the same key is moved
  again, its reason file rewritten, but not counted twice in the inbox);
- the delete is conditional (``If-Match`` on the ETag that was read): a file overwritten
  meanwhile is left for its own notification. Stores that reject conditional deletes can
  turn this off (``conditional_delete=False``).

The refused copy is written from the bytes that were judged (a ``put_object``, so a file
overwritten meanwhile cannot slip in); an oversized file, never downloaded, is copied
server-side.

Example::

    from unlearn_ops.adapters.aws.s3_intake import S3Intake
    from unlearn_ops.deletion.inbox import Inbox
    from unlearn_ops.settings import load_settings

    settings = load_settings()
    intake = S3Intake.from_settings(settings)
    report = intake.poll(Inbox("inbox.sqlite", settings), settings, wait_seconds=20)
    print(report.to_dict())

boto3 is imported only when clients are built, so importing this module stays cheap.

Why this module is long: one class, :class:`S3Intake`, holds one conversation with S3 and SQS (poll,
read, verify, record, delete the file and then the message, move refusals aside) whose
steps share its clients and its ordering guarantees; what S3 answers is parsed in
:mod:`~unlearn_ops.adapters.aws.answers` and the tally lives in
:mod:`~unlearn_ops.adapters.aws.report`. About 50 of its lines are this docstring.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from unlearn_ops.adapters.aws.answers import (
    bare_etag,
    is_missing,
    is_superseded,
    object_of,
    region_from_queue_url,
    unless_missing,
)
from unlearn_ops.adapters.aws.report import PollReport
from unlearn_ops.deletion.envelope import MAX_REQUEST_BYTES, canonical_json
from unlearn_ops.deletion.inbox import Inbox
from unlearn_ops.deletion.receive import (
    Accepted,
    Duplicate,
    Outcome,
    Refused,
    claimed_request_id,
    receive,
    refuse,
)
from unlearn_ops.errors import ConfigError, InvalidRequestError
from unlearn_ops.settings import ENV_PREFIX, Settings

__all__ = ["REASON_SUFFIX", "PollReport", "S3Intake"]

REASON_SUFFIX = ".reason.json"

# S3's limit for a single CopyObject; larger (oversized) files are copied in parts.
_COPY_OBJECT_LIMIT = 5 * 1024**3


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else f"{line[: limit - 3]}..."


class S3Intake:
    """Request files under ``s3://bucket/prefix``, announced on an SQS queue.

    Args:
        bucket: the intake bucket.
        prefix: where request files are dropped (``deletion-requests/``).
        rejected_prefix: where refused files are moved (``rejected/``).
        queue_url: the queue receiving the bucket's object-created notifications.
        s3: a boto3 S3 client (default: ``boto3.client("s3")``, built on first use).
        sqs: a boto3 SQS client (default: ``boto3.client("sqs")``, built on first use).
        conditional_delete: delete a handled file only if it still has the ETag that was
            read (``If-Match``); turn off for stores that reject the header.

    Raises:
        ConfigError: an empty bucket or queue URL, or a rejected prefix that the intake
            prefix starts with (every file would be skipped).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        rejected_prefix: str,
        queue_url: str,
        *,
        s3: Any = None,
        sqs: Any = None,
        conditional_delete: bool = True,
    ) -> None:
        problems = []
        if not bucket:
            problems.append("the intake bucket is empty")
        if not queue_url:
            problems.append("the intake queue URL is empty")
        if not rejected_prefix or prefix.startswith(rejected_prefix):
            problems.append(
                f"the rejected prefix {rejected_prefix!r} must be set and must not contain "
                f"the intake prefix {prefix!r} (it may lie inside it)"
            )
        if problems:
            raise ConfigError("S3 intake", problems)
        self.bucket = bucket
        self.prefix = prefix
        self.rejected_prefix = rejected_prefix
        self.queue_url = queue_url
        self.conditional_delete = conditional_delete
        self._s3 = s3
        self._sqs = sqs

    def __repr__(self) -> str:
        return f"S3Intake(s3://{self.bucket}/{self.prefix} via {self.queue_url})"

    @classmethod
    def from_settings(cls, settings: Settings, *, endpoint_url: str | None = None) -> S3Intake:
        """The intake that the settings name, with boto3 clients.

        Args:
            settings: `intake_bucket`, `intake_prefix`, `intake_rejected_prefix`,
                `intake_queue_url`.
            endpoint_url: an S3/SQS endpoint other than AWS (boto3 also reads
                `AWS_ENDPOINT_URL` itself); S3 then uses path-style addressing.

        Raises:
            ConfigError: the bucket or the queue URL is not set.
        """
        bucket, queue_url = settings.intake_bucket, settings.intake_queue_url
        if not bucket or not queue_url:
            missing = [
                f"{ENV_PREFIX}{name.upper()} is not set"
                for name, value in (("intake_bucket", bucket), ("intake_queue_url", queue_url))
                if not value
            ]
            raise ConfigError("settings", missing)
        import boto3
        from botocore.config import Config

        region = None
        if boto3.session.Session().region_name is None:
            region = region_from_queue_url(queue_url) or "us-east-1"
        s3_config = Config(s3={"addressing_style": "path"}) if endpoint_url else None
        return cls(
            bucket,
            settings.intake_prefix,
            settings.intake_rejected_prefix,
            queue_url,
            s3=boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=s3_config),
            sqs=boto3.client("sqs", endpoint_url=endpoint_url, region_name=region),
        )

    @property
    def s3(self) -> Any:
        """The S3 client."""
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    @property
    def sqs(self) -> Any:
        """The SQS client."""
        if self._sqs is None:
            import boto3

            region = region_from_queue_url(self.queue_url)
            self._sqs = boto3.client("sqs", **({"region_name": region} if region else {}))
        return self._sqs

    # ------------------------------------------------------------------ producer side
    def submit(self, envelope: Mapping[str, Any] | bytes, key: str | None = None) -> str:
        """Drop a request file under the prefix (what a privacy system does); returns its key.

        Nothing is checked here: the intake verifies what it receives.

        Args:
            envelope: a signed envelope (:func:`~unlearn_ops.deletion.envelope.sign_request`), as a
                mapping or as the bytes of the file.
            key: the object key; one not under the prefix is taken relative to it. Default:
                ``<prefix><request_id>.json``.

        Raises:
            InvalidRequestError: no key given, and the envelope names no usable request id.
        """
        data = envelope if isinstance(envelope, bytes) else canonical_json(dict(envelope))
        if key is None:
            request_id = claimed_request_id(data)
            if request_id is None:
                raise InvalidRequestError(
                    "the envelope names no usable request id", "give the object key"
                )
            key = f"{request_id}.json"
        if not key.startswith(self.prefix):
            key = f"{self.prefix}{key}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")
        return key

    # ------------------------------------------------------------------ operator side
    def rejected(self) -> list[dict[str, Any]]:
        """The reasons stored beside refused files, oldest first.

        Each is the reason file's content plus ``key``: where the refused file lies.
        """
        keys: set[str] = set()
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.rejected_prefix):
            keys.update(item["Key"] for item in page.get("Contents", []))
        reasons = []
        for key in sorted(keys):
            # A reason file lies beside the file it explains (a refused file may itself
            # be named *.reason.json: it has no such partner).
            if not key.endswith(REASON_SUFFIX) or key[: -len(REASON_SUFFIX)] not in keys:
                continue
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
            with contextlib.closing(response["Body"]) as stream:
                reason = json.loads(stream.read())
            if isinstance(reason, dict):
                reasons.append({**reason, "key": key[: -len(REASON_SUFFIX)]})
        return sorted(reasons, key=lambda reason: (str(reason.get("at")), reason["key"]))

    # ------------------------------------------------------------------ consumer side
    def poll(
        self,
        inbox: Inbox,
        settings: Settings,
        *,
        wait_seconds: int = 1,
        max_messages: int = 10,
        visibility_timeout: int = 60,
    ) -> PollReport:
        """Receive one batch of notifications and handle every file they name.

        Args:
            inbox: where requests (and refusals) are recorded.
            settings: the signing key and time limits that requests are verified with.
            wait_seconds: long poll: how long to wait for a first message (0 to 20).
            max_messages: at most this many messages (1 to 10).
            visibility_timeout: seconds a received message stays hidden; one that is not
                deleted (a failure) is received again after it.

        Returns:
            What was done; failures are in its `errors`, one line each (never raised).
        """
        if not 0 <= wait_seconds <= 20:
            raise ValueError(f"wait_seconds must be 0 to 20, got {wait_seconds}")
        if not 1 <= max_messages <= 10:
            raise ValueError(f"max_messages must be 1 to 10, got {max_messages}")
        if not 0 <= visibility_timeout <= 43200:
            raise ValueError(f"visibility_timeout must be 0 to 43200, got {visibility_timeout}")
        report = PollReport()
        try:
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility_timeout,
            )
        except Exception as exc:
            report.errors.append(
                _one_line(f"receive from {self.queue_url}: {type(exc).__name__}: {exc}")
            )
            return report
        for message in response.get("Messages", []):
            report.messages += 1
            message_id = str(message.get("MessageId", "?"))
            try:
                if not self._handle_message(message, inbox, settings, report):
                    continue  # its errors are reported; the message stays on the queue
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            except Exception as exc:
                report.errors.append(_one_line(f"sqs:{message_id}: {type(exc).__name__}: {exc}"))
        return report

    def _handle_message(
        self, message: Mapping[str, Any], inbox: Inbox, settings: Settings, report: PollReport
    ) -> bool:
        """Handle every record of one message; False if one failed (errors reported)."""
        source = f"sqs:{message.get('MessageId', '?')}"
        notification: object = None
        problem = "JSON without a list of S3 Records"
        try:
            notification = json.loads(message.get("Body") or "")
        except (ValueError, RecursionError):
            problem = "not JSON"
        if isinstance(notification, dict) and notification.get("Event") == "s3:TestEvent":
            report.skipped += 1
            return True
        records = notification.get("Records") if isinstance(notification, dict) else None
        if not isinstance(records, list):
            report.count(
                self._reject_notification(
                    inbox, source, f"not an S3 event notification ({problem})"
                )
            )
            return True
        failed = False
        for index, record in enumerate(records):
            located = object_of(record)
            if located is None:
                report.count(
                    self._reject_notification(
                        inbox, f"{source}#{index}", "a record without eventName, bucket or key"
                    )
                )
                continue
            event_name, bucket, key = located
            if (
                not event_name.startswith("ObjectCreated")
                or bucket != self.bucket
                or not key.startswith(self.prefix)
                or key.startswith(self.rejected_prefix)
            ):
                report.skipped += 1
                continue
            try:
                self._handle_object(key, inbox, settings, report)
            except Exception as exc:
                failed = True
                report.errors.append(
                    _one_line(f"s3://{bucket}/{key} ({source}): {type(exc).__name__}: {exc}")
                )
        return not failed

    @staticmethod
    def _reject_notification(inbox: Inbox, source: str, reason: str) -> Outcome:
        refusal = Refused("malformed-notification", reason)
        return refuse(inbox, refusal, source=source, delivery_id=source)

    def _handle_object(
        self, key: str, inbox: Inbox, settings: Settings, report: PollReport
    ) -> None:
        source = f"s3://{self.bucket}/{key}"
        head = unless_missing(self.s3.head_object, Bucket=self.bucket, Key=key)
        if head is None:
            report.gone += 1
            return
        size = int(head.get("ContentLength", 0))
        if size > MAX_REQUEST_BYTES:
            self._refuse_oversized(key, bare_etag(head["ETag"]), size, inbox, report)
            return
        response = unless_missing(self.s3.get_object, Bucket=self.bucket, Key=key)
        if response is None:
            report.gone += 1
            return
        with contextlib.closing(response["Body"]) as stream:
            data: bytes = stream.read(MAX_REQUEST_BYTES + 1)
        etag = bare_etag(response["ETag"])
        if len(data) > MAX_REQUEST_BYTES:  # replaced by a larger file since the head
            self._refuse_oversized(key, etag, int(response["ContentLength"]), inbox, report)
            return
        outcome = receive(
            inbox, data, source=source, delivery_id=f"{source}#{etag}", settings=settings
        )
        if not isinstance(outcome, Accepted | Duplicate):
            self._refuse(key, etag, data, outcome.kind, outcome.message, outcome.request_id)
        # Durable now (the request, or its refusal): the file, which holds raw ids, goes.
        self._delete(key, etag)
        report.count(outcome)

    def _refuse_oversized(
        self, key: str, etag: str, size: int, inbox: Inbox, report: PollReport
    ) -> None:
        source = f"s3://{self.bucket}/{key}"
        reason = str(
            InvalidRequestError(f"{size:,} bytes, more than the {MAX_REQUEST_BYTES:,} allowed")
        )
        try:
            self._refuse(key, etag, None, "oversized", reason, None, size=size)
        except Exception as exc:
            if is_missing(exc) or is_superseded(exc):
                report.gone += 1  # this version is no longer there to move
                return
            raise
        outcome = refuse(
            inbox, Refused("oversized", reason), source=source, delivery_id=f"{source}#{etag}"
        )
        self._delete(key, etag)
        report.count(outcome)

    def _rejected_key(self, key: str) -> str:
        return f"{self.rejected_prefix}{key[len(self.prefix) :]}"

    def _refuse(
        self,
        key: str,
        etag: str,
        data: bytes | None,
        kind: str,
        reason: str,
        request_id: str | None,
        *,
        size: int = 0,
    ) -> None:
        """Put the refused file under the rejected prefix, its reason beside it."""
        target = self._rejected_key(key)
        if data is not None:
            self.s3.put_object(Bucket=self.bucket, Key=target, Body=data)
        elif size <= _COPY_OBJECT_LIMIT:
            self.s3.copy_object(
                Bucket=self.bucket,
                Key=target,
                CopySource={"Bucket": self.bucket, "Key": key},
                CopySourceIfMatch=f'"{etag}"',
            )
        else:
            self.s3.copy({"Bucket": self.bucket, "Key": key}, self.bucket, target)
        explanation = {
            "kind": kind,
            "reason": reason,
            "at": _now(),
            "source": f"s3://{self.bucket}/{key}",
            "request_id": request_id,
        }
        self.s3.put_object(
            Bucket=self.bucket,
            Key=f"{target}{REASON_SUFFIX}",
            Body=json.dumps(explanation, indent=2, sort_keys=True).encode(),
            ContentType="application/json",
        )

    def _delete(self, key: str, etag: str) -> None:
        """Delete a handled file, unless it was overwritten meanwhile (or is gone already)."""
        condition = {"IfMatch": f'"{etag}"'} if self.conditional_delete else {}
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key, **condition)
        except Exception as exc:
            # Missing: deleted already. Superseded: a newer file, with its own notification.
            if not (is_missing(exc) or is_superseded(exc)):
                raise

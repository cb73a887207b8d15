"""What S3 and SQS answer, read: error codes, ETags, regions, notification records.

Pure functions (no boto3 import): the S3 intake asks them whether an object is missing or
was overwritten meanwhile, and where a notification record points.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlparse

__all__ = [
    "bare_etag",
    "error_code",
    "is_missing",
    "is_superseded",
    "object_of",
    "region_from_queue_url",
    "unless_missing",
]

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})


def error_code(exc: BaseException) -> str | None:
    """The S3/SQS error code of a botocore ClientError (None for any other exception)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None
    code = response.get("Error", {}).get("Code")
    return None if code is None else str(code)


def is_missing(exc: BaseException) -> bool:
    return error_code(exc) in _MISSING_CODES


def unless_missing(call: Callable[..., Any], **kwargs: Any) -> Any:
    """`call(**kwargs)`, or None when the object is not there (any other error raises)."""
    try:
        return call(**kwargs)
    except Exception as exc:
        if is_missing(exc):
            return None
        raise


def is_superseded(exc: BaseException) -> bool:
    return error_code(exc) in _PRECONDITION_CODES


def bare_etag(etag: str) -> str:
    return etag.strip().strip('"')


def region_from_queue_url(queue_url: str) -> str | None:
    """`us-east-1` from `https://sqs.us-east-1.amazonaws.com/123/q` (None elsewhere)."""
    host = urlparse(queue_url).hostname or ""
    match = re.fullmatch(r"sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?", host)
    return match.group(1) if match else None


def object_of(record: object) -> tuple[str, str, str] | None:
    """(eventName, bucket, key) of a notification record, the key URL-decoded."""
    if not isinstance(record, dict):
        return None
    s3 = record.get("s3")
    event_name = record.get("eventName")
    if not isinstance(s3, dict) or not isinstance(event_name, str):
        return None
    bucket = s3.get("bucket", {}).get("name") if isinstance(s3.get("bucket"), dict) else None
    key = s3.get("object", {}).get("key") if isinstance(s3.get("object"), dict) else None
    if not isinstance(bucket, str) or not isinstance(key, str) or not key:
        return None
    return event_name, bucket, unquote_plus(key)

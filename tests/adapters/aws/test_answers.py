"""Reading what S3 and SQS answer: error codes, ETags, regions, notification records."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from unlearn_ops.adapters.aws.answers import (
    bare_etag,
    error_code,
    is_missing,
    is_superseded,
    object_of,
    region_from_queue_url,
    unless_missing,
)


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "HeadObject")


def test_error_codes_of_client_errors_only() -> None:
    assert error_code(client_error("NoSuchKey")) == "NoSuchKey"
    assert error_code(RuntimeError("NoSuchKey")) is None
    assert is_missing(client_error("404"))
    assert not is_missing(client_error("AccessDenied"))
    assert is_superseded(client_error("PreconditionFailed"))


def test_unless_missing_turns_only_a_missing_object_into_none() -> None:
    def head(**kwargs: object) -> object:
        raise client_error(str(kwargs["code"]))

    assert unless_missing(head, code="NoSuchKey") is None
    with pytest.raises(ClientError):
        unless_missing(head, code="AccessDenied")
    assert unless_missing(lambda **kwargs: kwargs, Key="k") == {"Key": "k"}


def test_etags_and_regions() -> None:
    assert bare_etag(' "abc123" ') == "abc123"
    assert region_from_queue_url("https://sqs.eu-west-1.amazonaws.com/1/q") == "eu-west-1"
    assert region_from_queue_url("http://127.0.0.1:5000/1/q") is None


def test_notification_records() -> None:
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "b"}, "object": {"key": "deletion-requests/a+b%C3%BC.json"}},
    }
    assert object_of(record) == ("ObjectCreated:Put", "b", "deletion-requests/a bü.json")
    assert object_of({"eventName": "x", "s3": {"bucket": "b"}}) is None
    assert object_of(["not", "a", "record"]) is None

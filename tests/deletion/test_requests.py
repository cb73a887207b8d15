"""Forget requests: strict validation that names the field, canonical ids, git-safe request ids."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from unlearn_ops.deletion.requests import (
    MAX_RECORDS_PER_REQUEST,
    REQUEST_ID_PATTERN,
    ForgetRequest,
    new_request_id,
)
from unlearn_ops.errors import InvalidRequestError

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
REQUEST_LIKE = (
    st.fixed_dictionaries(
        {},
        optional={
            "request_id": st.from_regex(REQUEST_ID_PATTERN, fullmatch=True) | JSON_VALUES,
            "record_ids": st.lists(st.integers() | st.text(max_size=6), max_size=6) | JSON_VALUES,
            "reason": st.text(max_size=20) | JSON_VALUES,
            "requested_at": st.datetimes().map(datetime.isoformat) | JSON_VALUES,
            "extra": JSON_VALUES,
        },
    )
    | st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=4)
    | JSON_VALUES
)


# ---------------------------------------------------------------------------- good
def test_a_good_request_parses_with_every_field() -> None:
    request = ForgetRequest.parse(
        {
            "request_id": "req-2026.11-a_1",
            "record_ids": ["a", 7],
            "reason": "GDPR art. 17",
            "requested_at": "2026-11-01T12:00:00Z",
        }
    )
    assert request.request_id == "req-2026.11-a_1"
    assert request.record_ids == ("a", "7")
    assert request.reason == "GDPR art. 17"
    assert request.requested_at == datetime(2026, 11, 1, 12, tzinfo=UTC)


def test_defaults_give_a_fresh_sortable_request_id_and_a_reason() -> None:
    request = ForgetRequest.parse({"record_ids": [1]})
    assert re.fullmatch(r"req-\d{8}T\d{6}-[0-9a-f]{8}", request.request_id)
    assert re.fullmatch(REQUEST_ID_PATTERN, request.request_id)
    assert request.reason == "erasure request"
    assert request.requested_at.tzinfo is not None
    assert new_request_id() != new_request_id()


def test_build_validates_plain_values_like_parse() -> None:
    built = ForgetRequest.build([3, "4"], "req-built", "because")
    parsed = ForgetRequest.parse(
        {"request_id": "req-built", "record_ids": [3, "4"], "reason": "because"}
    )
    assert built.model_dump(exclude={"requested_at"}) == parsed.model_dump(exclude={"requested_at"})
    with pytest.raises(InvalidRequestError, match="request_id"):
        ForgetRequest.build([1], "../escape")
    with pytest.raises(InvalidRequestError, match="record_ids"):
        ForgetRequest.build([])


def test_ids_are_canonical_text_without_duplicates_in_first_seen_order() -> None:
    request = ForgetRequest.parse({"record_ids": [7, "x", "7", " 7 ", 8, "x", "8"]})
    assert request.record_ids == ("7", "x", "8")


def test_exactly_the_maximum_number_of_ids_is_accepted() -> None:
    ids = [str(i) for i in range(MAX_RECORDS_PER_REQUEST)]
    assert len(ForgetRequest.parse({"record_ids": ids}).record_ids) == MAX_RECORDS_PER_REQUEST
    # Duplicates do not count: they collapse before the limit is checked.
    doubled = ForgetRequest.parse({"record_ids": [*ids, "0"]})
    assert len(doubled.record_ids) == MAX_RECORDS_PER_REQUEST


def test_a_request_is_frozen() -> None:
    request = ForgetRequest.parse({"record_ids": [1]})
    with pytest.raises(ValueError, match="frozen"):
        request.reason = "changed"  # type: ignore[misc]


# ----------------------------------------------------------------------------- bad
@pytest.mark.parametrize(
    ("data", "named"),
    [
        ([], "must be a JSON object, got list"),
        ("record_ids", "must be a JSON object, got str"),
        (None, "must be a JSON object, got NoneType"),
        ({}, "record_ids: Field required"),
        ({"record_ids": []}, "record_ids: Value error, give at least one record id"),
        ({"record_ids": "1,2"}, "record_ids: Input should be a valid tuple"),
        ({"record_ids": {"1": 2}}, "record_ids: Input should be a valid tuple"),
        ({"record_ids": [True]}, "record_ids: Value error, record ids must be strings or"),
        ({"record_ids": ["1", False]}, "record_ids: Value error, record ids must be strings"),
        ({"record_ids": [1.5]}, "record_ids: Value error, record ids must be strings or"),
        ({"record_ids": [2.0]}, "record_ids: Value error, record ids must be strings or"),
        ({"record_ids": [["1"]]}, "record_ids: Value error, record ids must be strings or"),
        ({"record_ids": [None]}, "record_ids: Value error, record ids must be strings or"),
        ({"record_ids": [""]}, "record_ids: Value error, record ids must not be empty"),
        ({"record_ids": ["1", "   "]}, "record_ids: Value error, record ids must not be empty"),
        ({"record_ids": ["1"], "shard": 3}, "shard: Extra inputs are not permitted"),
        ({"record_ids": ["1"], "reason": "x" * 501}, "reason: String should have at most"),
        ({"record_ids": ["1"], "reason": 5}, "reason: Input should be a valid string"),
        ({"record_ids": ["1"], "requested_at": "soon"}, "requested_at: Input should be a valid"),
    ],
    ids=lambda value: repr(value)[:32],
)
def test_a_bad_request_is_refused_naming_its_field(data: object, named: str) -> None:
    with pytest.raises(InvalidRequestError, match=re.escape(named)):
        ForgetRequest.parse(data)


@pytest.mark.parametrize(
    "request_id",
    [
        "../x",
        "a..b",
        ".x",
        "x.",
        "x:y",
        "x/y",
        "x y",
        "-x",
        "_x",
        "",
        "x@{1}",
        "req-1\n",
        "é",
        "x" * 129,
    ],
)
def test_a_bad_request_id_is_refused_naming_request_id(request_id: str) -> None:
    with pytest.raises(InvalidRequestError, match="request_id: String should"):
        ForgetRequest.parse({"request_id": request_id, "record_ids": ["1"]})


def test_a_request_id_of_128_characters_is_accepted() -> None:
    request_id = "r" * 128
    assert ForgetRequest.parse({"request_id": request_id, "record_ids": [1]}).request_id == (
        request_id
    )


def test_one_id_too_many_is_refused() -> None:
    ids = [str(i) for i in range(MAX_RECORDS_PER_REQUEST + 1)]
    with pytest.raises(InvalidRequestError, match="record_ids: Tuple should have at most 10000"):
        ForgetRequest.parse({"record_ids": ids})


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ForgetRequest.parse({"request_id": "a..b", "record_ids": [], "colour": "red"})
    message = str(caught.value)
    assert message.startswith("invalid request: ")
    for field in ("request_id", "record_ids", "colour"):
        assert f"{field}: " in message


# ------------------------------------------------------------------------ properties
@settings(max_examples=300, deadline=None)
@given(data=REQUEST_LIKE)
def test_parse_returns_a_valid_request_or_raises_invalid_request_error(data: Any) -> None:
    try:
        request = ForgetRequest.parse(data)
    except InvalidRequestError:
        return
    assert isinstance(data, dict)
    assert re.fullmatch(REQUEST_ID_PATTERN, request.request_id)
    assert len(request.request_id) <= 128
    assert 1 <= len(request.record_ids) <= MAX_RECORDS_PER_REQUEST
    assert len(set(request.record_ids)) == len(request.record_ids)
    assert all(isinstance(r, str) and r and r == r.strip() for r in request.record_ids)
    assert len(request.reason) <= 500


@settings(max_examples=100, deadline=None)
@given(request_id=st.from_regex(REQUEST_ID_PATTERN, fullmatch=True))
@example(request_id="req.lock")
@example(request_id="erasure-2026.v2")
def test_an_accepted_request_id_can_name_a_git_tag(request_id: str) -> None:
    # The forget flow tags the data revision `unlearn/forget/<request_id>`: a request id
    # that validates but that git refuses as a tag wedges the request after retraining.
    try:
        ForgetRequest.parse({"request_id": request_id, "record_ids": ["1"]})
    except InvalidRequestError:
        return
    check = subprocess.run(
        ["git", "check-ref-format", f"refs/tags/unlearn/forget/{request_id}"],
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0, f"git refuses the tag of request id {request_id!r}"

"""Reading ISO 8601 times: zones kept, naive times as UTC, one clear error for the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from unlearn_ops.timestamps import format_datetime, parse_datetime, parse_datetime_or_none

NOON = datetime(2027, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2027-01-31T12:00:00",
        "2027-01-31T12:00:00Z",
        "2027-01-31T13:00:00+01:00",
        " 2027-01-31T12:00 ",
    ],
)
def test_every_spelling_of_one_instant_reads_the_same(text: str) -> None:
    assert parse_datetime(text) == NOON
    assert parse_datetime_or_none(text) == NOON


def test_a_zone_is_kept_and_a_bare_date_is_utc_midnight() -> None:
    assert parse_datetime("2027-01-31T13:00:00+01:00").utcoffset() == timedelta(hours=1)
    assert parse_datetime("2027-01-31") == datetime(2027, 1, 31, tzinfo=UTC)


def test_datetimes_pass_through_naive_ones_become_utc() -> None:
    berlin = datetime(2027, 1, 31, 13, tzinfo=timezone(timedelta(hours=1)))
    assert parse_datetime(berlin) is berlin
    assert parse_datetime(datetime(2027, 1, 31, 12)) == NOON


@pytest.mark.parametrize("text", ["next tuesday", "", "2027-13-01", "31/01/2027"])
def test_bad_text_is_one_value_error_that_quotes_it(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a date \(YYYY-MM-DD\) or ISO date-time") as info:
        parse_datetime(text)
    assert repr(text) in str(info.value)
    assert info.value.__cause__ is None
    assert parse_datetime_or_none(text) is None


@pytest.mark.parametrize("value", [None, 17, ["2027-01-31"], b"2027-01-31"])
def test_what_is_not_text_is_none_when_lenient(value: object) -> None:
    assert parse_datetime_or_none(value) is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2027-01-03T19:01:23.564000+00:00", "2027-01-03 19:01:23 UTC"),
        ("2027-01-03T20:01:23+01:00", "2027-01-03 19:01:23 UTC"),
        ("2027-01-03", "2027-01-03 00:00:00 UTC"),
        (datetime(2027, 1, 3, 19, 1, 23, tzinfo=UTC), "2027-01-03 19:01:23 UTC"),
        (None, "-"),
        ("soon", "-"),
    ],
)
def test_times_are_shown_to_the_second_in_utc(value: str | datetime | None, shown: str) -> None:
    assert format_datetime(value) == shown

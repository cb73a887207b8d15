"""Reading times: ISO 8601 text into aware datetimes, naive times taken as UTC.

Every time this package writes (ledger entries, requests, reports) is ISO 8601; a time
without a zone is read as UTC, because that is what the package has always written.

Example::

    >>> parse_datetime("2027-01-31T12:00:00")
    datetime.datetime(2027, 1, 31, 12, 0, tzinfo=datetime.timezone.utc)
    >>> parse_datetime_or_none("yesterday") is None
    True
    >>> format_datetime("2027-01-31T13:00:00.5+01:00")
    '2027-01-31 12:00:00 UTC'
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_datetime", "parse_datetime", "parse_datetime_or_none"]


def parse_datetime(value: str | datetime) -> datetime:
    """An ISO 8601 date or date-time as an aware datetime (UTC when it has no zone).

    Args:
        value: text such as ``2027-01-31``, ``2027-01-31T12:00:00`` or
            ``2027-01-31T12:00:00+01:00`` (``Z`` too); a datetime is passed through.

    Raises:
        ValueError: `value` is not an ISO 8601 date or date-time; the message quotes it
            and shows the form expected.
    """
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except (ValueError, AttributeError, TypeError):
            # The message the CLI has always printed for a bad --since/--until.
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or ISO date-time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_datetime_or_none(value: object) -> datetime | None:
    """Like :func:`parse_datetime`, but None for anything that is not a readable time.

    For fields read back from files written over many versions, where a missing or
    garbled time means "unknown" rather than an error.
    """
    if not isinstance(value, str | datetime) or value == "":
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def format_datetime(value: str | datetime | None) -> str:
    """A time for people to read: ``2027-01-31 12:00:00 UTC`` (to the second, in UTC).

    The form the CLI prints everywhere (JSON output keeps ISO 8601); ``-`` for None or
    for text that is not a time.
    """
    parsed = parse_datetime_or_none(value)
    if parsed is None:
        return "-"
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

"""Deletion requests: who asks to forget which records, validated strictly.

A request id is the idempotency key: the same id with the same records is the same
request however often it arrives; the same id with other records is refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from unlearn_ops.errors import InvalidRequestError
from unlearn_ops.hashing import canonical_id

__all__ = ["MAX_RECORDS_PER_REQUEST", "ForgetRequest", "new_request_id"]

MAX_RECORDS_PER_REQUEST = 10_000
# Usable as a git tag component: no "..", no ":", no leading or trailing dot.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$"


def new_request_id() -> str:
    """A fresh request id: `req-YYYYMMDDTHHMMSS-<8 hex>` (sortable by arrival)."""
    return f"req-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


class ForgetRequest(BaseModel):
    """A request to forget records.

    Attributes:
        request_id: idempotency key (letters, digits, `_ -` and single inner dots; at most
            128 characters, so that it can name a git tag).
        record_ids: the ids to forget, as text (ids compare as text).
        reason: why (e.g. "GDPR art. 17").
        requested_at: when the person asked (the legal deadline runs from here).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(
        default_factory=new_request_id, pattern=REQUEST_ID_PATTERN, max_length=128
    )
    record_ids: tuple[str, ...] = Field(min_length=1, max_length=MAX_RECORDS_PER_REQUEST)
    reason: str = Field("erasure request", max_length=500)
    requested_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("request_id")
    @classmethod
    def _usable_as_git_tag(cls, value: str) -> str:
        # Each request names a git tag (unlearn/forget/<id>), and git refuses `.lock` names.
        if value.endswith(".lock"):
            raise ValueError("must not end in '.lock' (it names a git tag)")
        return value

    @field_validator("record_ids", mode="before")
    @classmethod
    def _canonical_ids(cls, value: object) -> object:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            return value
        ids = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise ValueError(f"record ids must be strings or integers, got {item!r}")
            text = canonical_id(item).strip()
            if not text:
                raise ValueError("record ids must not be empty")
            ids.append(text)
        return tuple(dict.fromkeys(ids))

    @classmethod
    def parse(cls, data: object) -> ForgetRequest:
        """Validate a request from a mapping (JSON, a flow parameter, an event payload).

        Raises:
            InvalidRequestError: naming every problem.
        """
        if not isinstance(data, Mapping):
            raise InvalidRequestError(f"a request must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg']}"
                for err in exc.errors()
            )
            raise InvalidRequestError(problems) from exc

    @classmethod
    def build(
        cls,
        record_ids: Sequence[object],
        request_id: str | None = None,
        reason: str | None = None,
    ) -> ForgetRequest:
        """Validate a request from plain values (a new id when `request_id` is None).

        Raises:
            InvalidRequestError: naming every problem.
        """
        data: dict[str, object] = {"record_ids": list(record_ids)}
        if request_id is not None:
            data["request_id"] = request_id
        if reason is not None:
            data["reason"] = reason
        return cls.parse(data)

"""Deletion requests: who asks to forget which records, validated strictly.

A request id is the idempotency key: the same id with the same records is the same
request however often it arrives; the same id with other records is refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from unlearn_ops.errors import InvalidRequestError
from unlearn_ops.sisa.hashing import canonical_id

if TYPE_CHECKING:
    from unlearn_ops.settings import Settings

__all__ = [
    "MAX_RECORDS_PER_REQUEST",
    "ForgetRequest",
    "RequestId",
    "new_request_id",
]

MAX_RECORDS_PER_REQUEST = 10_000
# Usable as a git tag component: no "..", no ":", no leading or trailing dot.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$"


def check_request_id(value: str) -> str:
    """A request id names a git tag (unlearn/forget/<id>), and git refuses `.lock` names."""
    if value.endswith(".lock"):
        raise ValueError("must not end in '.lock' (it names a git tag)")
    return value


# A request id, as every request model takes it: pattern, length, no `.lock` ending.
RequestId = Annotated[
    str,
    StringConstraints(pattern=REQUEST_ID_PATTERN, max_length=128),
    AfterValidator(check_request_id),
]


def canonical_record_ids(value: object, max_length: int | None = None) -> object:
    """Record ids as canonical text, duplicates dropped (a `mode="before"` validator).

    Messages name the type of a bad id, never its value: they are kept with refusals.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return value
    ids = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ValueError(f"record ids must be strings or integers, got {type(item).__name__}")
        text = canonical_id(item).strip()
        if not text:
            raise ValueError("record ids must not be empty")
        if max_length is not None and len(text) > max_length:
            raise ValueError(f"record ids must have 1 to {max_length} characters")
        ids.append(text)
    return tuple(dict.fromkeys(ids))


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
        forgotten_hashes: keyed hashes of records of this request that were forgotten
            before it arrived. A request rebuilt from keyed hashes (the inbox keeps no ids)
            cannot name those records, only their hashes; `record_ids` may then be empty.
        signed_by: who vouched for it when it arrived (`hmac:<key id>`, `bearer`), kept
            in the ledger's `received` entry; None for a request typed at the CLI.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: RequestId = Field(default_factory=new_request_id)
    # Declared before record_ids, so that record_ids' validator sees it.
    forgotten_hashes: tuple[str, ...] = Field((), max_length=MAX_RECORDS_PER_REQUEST)
    record_ids: tuple[str, ...] = Field(max_length=MAX_RECORDS_PER_REQUEST)
    reason: str = Field("erasure request", max_length=500)
    requested_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    signed_by: str | None = Field(None, max_length=80)

    @field_validator("record_ids")
    @classmethod
    def _names_records(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if not value and not info.data.get("forgotten_hashes"):
            raise ValueError("give at least one record id")
        return value

    @field_validator("forgotten_hashes")
    @classmethod
    def _hex_hashes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(h) != 64 or h.strip("0123456789abcdef") for h in value):
            raise ValueError("forgotten_hashes must be keyed hashes (64 hex digits)")
        return tuple(sorted(set(value)))

    def record_hashes(self, settings: Settings) -> list[str]:
        """Keyed hashes of every record of the request (those forgotten before included)."""
        return sorted(
            {settings.hash_record_id(r) for r in self.record_ids} | set(self.forgotten_hashes)
        )

    @field_validator("record_ids", mode="before")
    @classmethod
    def _canonical_ids(cls, value: object) -> object:
        return canonical_record_ids(value)

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

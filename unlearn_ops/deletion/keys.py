"""Producers and their signing keys: who may sign deletion requests, with which key, when.

Each producing system (a CRM, a support desk) signs with keys of its own. A key id names
one key of one producer: key ids are unique across producers, so the key id alone says
who signed. The keys come from two places:

- `UNLEARN_OPS_REQUEST_SIGNING_KEY`: the key id ``default`` of the producer ``default``
  (what single-producer deployments have always used);
- `UNLEARN_OPS_REQUEST_KEYS_FILE`: a JSON or YAML file, readable by its owner only
  (mode 0600), of producer -> key id -> key::

      crm:
        crm-2026-11:
          secret: "..."                         # at least 16 characters
          valid_from: 2026-11-01T00:00:00Z      # optional: refused before
          valid_until: 2026-12-01T00:00:00Z     # optional: refused from then on
        crm-2026-12:
          secret: "..."
          valid_from: 2026-11-25T00:00:00Z      # overlap: both keys verify until 12-01
      support-desk:
        desk-1:
          secret: "..."
          revoked_at: 2026-11-20T08:00:00Z      # refused from then on

The file is read at each verification, so a rotation or a revocation takes effect at
the next request, without a restart. A signature that matches a key is then judged by the
key's state at the time of verification: `revoked-key`, `expired-key`,
`not-yet-valid-key`; an envelope that names its producer (``signature.producer``) and is
signed with a key of another is refused as `foreign-key`. Messages name key ids and
producers, never a secret; errors about the file name the line, never its text.

A status query on the HTTP intake is vouched for by the same keys
(:mod:`unlearn_ops.adapters.http.auth`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, ValidationError

from unlearn_ops.errors import ConfigError, UnauthenticatedRequestError
from unlearn_ops.settings import Settings

__all__ = [
    "BEARER_PRODUCER",
    "DEFAULT_KEY_ID",
    "DEFAULT_PRODUCER",
    "KEY_ID_PATTERN",
    "KeyRing",
    "KeyState",
    "SigningKey",
    "check_bearer_token",
    "load_key_ring",
    "parse_keys",
    "read_key_file",
]

DEFAULT_PRODUCER = "default"
DEFAULT_KEY_ID = "default"
BEARER_PRODUCER = "bearer"  # who the bearer token vouches for
KEY_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
MIN_SECRET_LENGTH = 16
_KEYS_VARIABLE = "UNLEARN_OPS_REQUEST_KEYS_FILE"
KeyState = Literal["valid", "revoked", "expired", "not-yet-valid"]


class _KeySpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    secret: SecretStr = Field(min_length=MIN_SECRET_LENGTH)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None


@dataclass(frozen=True)
class SigningKey:
    """One key of one producer, and when it may be used.

    Attributes:
        producer: the producing system that holds it.
        key_id: its id (unique across producers).
        secret: the HMAC secret (a `SecretStr`: its text never prints).
        valid_from: refused before this time (None: no start).
        valid_until: refused from this time on (None: no end).
        revoked_at: refused from this time on, whatever `valid_until` says.
    """

    producer: str
    key_id: str
    secret: SecretStr
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> KeyState:
        """The key's state at `now`: revocation first, then the validity window."""
        if self.revoked_at is not None and now >= self.revoked_at:
            return "revoked"
        if self.valid_until is not None and now >= self.valid_until:
            return "expired"
        if self.valid_from is not None and now < self.valid_from:
            return "not-yet-valid"
        return "valid"

    def mac(self, text: bytes) -> str:
        """HMAC-SHA256 of `text` under this key, as hex."""
        secret = self.secret.get_secret_value().encode("utf-8", "surrogatepass")
        return hmac.new(secret, text, hashlib.sha256).hexdigest()

    def describe(self) -> dict[str, Any]:
        """JSON-ready, without the secret (for `audit`, logs and listings)."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.astimezone(UTC).isoformat()

        return {
            "producer": self.producer,
            "key_id": self.key_id,
            "valid_from": iso(self.valid_from),
            "valid_until": iso(self.valid_until),
            "revoked_at": iso(self.revoked_at),
        }


@dataclass(frozen=True)
class KeyRing:
    """Every producer's keys, by key id."""

    keys: Mapping[str, SigningKey]

    def get(self, key_id: str) -> SigningKey | None:
        """The key with this id, or None."""
        return self.keys.get(key_id)

    def producer_of(self, key_id: str) -> str | None:
        """The producer holding `key_id`, or None."""
        key = self.keys.get(key_id)
        return None if key is None else key.producer

    def check(
        self, key: SigningKey, now: datetime, claimed_producer: str | None = None
    ) -> SigningKey:
        """Refuse a (matching) key that may not be used now, or that another producer holds.

        Raises:
            UnauthenticatedRequestError: `revoked-key`, `expired-key`, `not-yet-valid-key`
                or `foreign-key`.
        """
        state = key.state(now)
        if state == "revoked":
            raise UnauthenticatedRequestError(
                "revoked-key",
                f"key {key.key_id!r} of producer {key.producer!r} was revoked; "
                "sign with a current key of the producer",
            )
        if state == "expired":
            raise UnauthenticatedRequestError(
                "expired-key",
                f"key {key.key_id!r} of producer {key.producer!r} is no longer valid "
                "(rotated out); sign with its successor",
            )
        if state == "not-yet-valid":
            raise UnauthenticatedRequestError(
                "not-yet-valid-key",
                f"key {key.key_id!r} of producer {key.producer!r} is not valid yet; "
                "sign with the current key until its valid_from",
            )
        if claimed_producer is not None and claimed_producer != key.producer:
            raise UnauthenticatedRequestError(
                "foreign-key",
                f"key {key.key_id!r} is not a key of producer {claimed_producer!r}; "
                "each producer signs with its own keys",
            )
        return key


def _problem(err: Any) -> str:
    # Locations and messages only: pydantic's `input` would quote a secret.
    where = ".".join(str(part)[:64] for part in err["loc"])
    return f"{where}: {err['msg']}"


def parse_keys(data: object, source: str) -> dict[str, SigningKey]:
    """Keys from a parsed key file (producer -> key id -> key).

    Raises:
        ConfigError: not that shape, a bad id or time, a short secret, a key id twice.
    """
    import re

    if not isinstance(data, Mapping):
        raise ConfigError(
            source, [f"expected producer -> key id -> key, got {type(data).__name__}"]
        )
    keys: dict[str, SigningKey] = {}
    problems: list[str] = []
    for producer, entries in data.items():
        if not isinstance(producer, str) or not re.fullmatch(KEY_ID_PATTERN, producer):
            problems.append(f"producer {str(producer)[:64]!r}: not a name like {KEY_ID_PATTERN}")
            continue
        if not isinstance(entries, Mapping) or not entries:
            problems.append(f"{producer}: expected key id -> key")
            continue
        for key_id, spec in entries.items():
            if not isinstance(key_id, str) or not re.fullmatch(KEY_ID_PATTERN, key_id):
                problems.append(
                    f"{producer}: key id {str(key_id)[:64]!r} is not like {KEY_ID_PATTERN}"
                )
                continue
            if key_id in keys:
                problems.append(
                    f"key id {key_id!r} is held by {keys[key_id].producer!r} and {producer!r}"
                    " (key ids are unique across producers)"
                )
                continue
            try:
                parsed = _KeySpec.model_validate(spec)
            except ValidationError as exc:
                problems += [f"{producer}.{key_id}.{_problem(err)}" for err in exc.errors()]
                continue
            if (
                parsed.valid_from is not None
                and parsed.valid_until is not None
                and parsed.valid_until <= parsed.valid_from
            ):
                problems.append(f"{producer}.{key_id}: valid_until is not after valid_from")
                continue
            keys[key_id] = SigningKey(
                producer,
                key_id,
                parsed.secret,
                parsed.valid_from,
                parsed.valid_until,
                parsed.revoked_at,
            )
    if problems:
        raise ConfigError(source, problems)
    return keys


def read_key_file(path: Path) -> dict[str, SigningKey]:
    """The keys of a key file, after checking that only its owner can read it.

    Raises:
        ConfigError: missing, readable by others, not JSON or YAML, or invalid.
    """
    import yaml

    source = f"{_KEYS_VARIABLE} {path}"
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read it ({exc.strerror})"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(source, ["not UTF-8 text"]) from exc
    if mode & 0o077:
        raise ConfigError(
            source,
            [f"mode {mode:04o} lets other users read the secrets; run `chmod 600 {path}`"],
        )
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, [f"not JSON ({exc.msg} at line {exc.lineno})"]) from exc
    except yaml.YAMLError as exc:
        # The problem and the line, never the snippet: it may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid"
        raise ConfigError(source, [f"not YAML ({problem}{line})"]) from exc
    return parse_keys(data, source)


def load_key_ring(settings: Settings) -> KeyRing:
    """The keys of the settings' signing key and key file (read now).

    Raises:
        ConfigError: the key file is invalid, or names the settings key's id `default`.
    """
    keys: dict[str, SigningKey] = {}
    if settings.request_keys_file is not None:
        keys.update(read_key_file(settings.request_keys_file))
    secret = settings.request_signing_key
    if secret is not None and secret.get_secret_value():  # an empty key would let anyone in
        if DEFAULT_KEY_ID in keys:
            raise ConfigError(
                f"{_KEYS_VARIABLE} {settings.request_keys_file}",
                [
                    f"key id {DEFAULT_KEY_ID!r} is UNLEARN_OPS_REQUEST_SIGNING_KEY's;"
                    " give the file's key another id, or unset that variable"
                ],
            )
        keys[DEFAULT_KEY_ID] = SigningKey(DEFAULT_PRODUCER, DEFAULT_KEY_ID, secret)
    return KeyRing(keys)


def check_bearer_token(token: str, settings: Settings) -> str:
    """The producer a bearer token stands for (`bearer`), if it is the configured one.

    Raises:
        UnauthenticatedRequestError: `bad-token` (none configured, or another).
    """
    expected = settings.request_bearer_token
    if (
        expected is None
        or not expected.get_secret_value()  # an empty token would let "Bearer " in
        or not hmac.compare_digest(
            token.encode("utf-8", "surrogatepass"),
            expected.get_secret_value().encode("utf-8", "surrogatepass"),
        )
    ):
        raise UnauthenticatedRequestError("bad-token", "the bearer token is not accepted")
    return BEARER_PRODUCER

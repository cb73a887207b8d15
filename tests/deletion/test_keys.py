"""Producers and keys: the key file, rotation overlaps, revocation, and who the inbox names."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from unlearn_ops.deletion.envelope import sign_request, verify_request
from unlearn_ops.deletion.inbox import Inbox
from unlearn_ops.deletion.keys import KeyRing, load_key_ring, parse_keys
from unlearn_ops.errors import ConfigError, UnauthenticatedRequestError
from unlearn_ops.settings import Settings

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CRM_OLD = "sk-crm-2026-10-aaaa-bbbb"
CRM_NEW = "sk-crm-2026-11-cccc-dddd"
DESK = "sk-desk-1-eeee-ffff-0000"
DEFAULT = "sk-default-1111-2222"
SECRETS = (CRM_OLD, CRM_NEW, DESK, DEFAULT)
REQUEST = {
    "request_id": "dsr-keys-1",
    "record_ids": ["17"],
    "reason": "GDPR art. 17",
    "requested_at": "2026-11-20T09:00:00+00:00",
}
# crm rotates from crm-old to crm-new: both valid from 11-15 until crm-old ends on 11-25.
KEYS: dict[str, Any] = {
    "crm": {
        "crm-old": {"secret": CRM_OLD, "valid_until": "2026-11-25T00:00:00Z"},
        "crm-new": {"secret": CRM_NEW, "valid_from": "2026-11-15T00:00:00Z"},
    },
    "support-desk": {"desk-1": {"secret": DESK, "revoked_at": "2026-11-21T00:00:00Z"}},
}


def write_keys(path: Path, data: object, mode: int = 0o600) -> Path:
    text = json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        request_signing_key=SecretStr(DEFAULT),
        request_keys_file=write_keys(tmp_path / "keys.yaml", KEYS),
        request_max_age_seconds=30 * 86400,
    )


def signed(key_id: str, secret: str, at: datetime, producer: str | None = None) -> dict[str, Any]:
    request = {**REQUEST, "request_id": f"dsr-{key_id}-{at:%m%d}"}
    return sign_request(request, secret, key_id=key_id, signed_at=at, producer=producer)


def refusal(envelope: dict[str, Any], settings: Settings, now: datetime) -> str:
    with pytest.raises(UnauthenticatedRequestError) as caught:
        verify_request(envelope, settings, now=now)
    message = str(caught.value)
    assert not any(secret in message for secret in SECRETS)
    return caught.value.kind


def test_during_the_overlap_both_keys_of_a_producer_verify(settings: Settings) -> None:
    moment = datetime(2026, 11, 20, tzinfo=UTC)
    old = verify_request(signed("crm-old", CRM_OLD, moment), settings, now=moment)
    new = verify_request(signed("crm-new", CRM_NEW, moment, "crm"), settings, now=moment)
    assert (old.producer, old.key_id, old.authenticated_by) == ("crm", "crm-old", "hmac:crm-old")
    assert (new.producer, new.key_id) == ("crm", "crm-new")
    default = verify_request(signed("default", DEFAULT, moment), settings, now=moment)
    assert (default.producer, default.key_id) == ("default", "default")


def test_after_the_overlap_the_old_key_is_refused_as_expired(settings: Settings) -> None:
    later = datetime(2026, 11, 26, tzinfo=UTC)
    assert refusal(signed("crm-old", CRM_OLD, later), settings, later) == "expired-key"
    assert verify_request(signed("crm-new", CRM_NEW, later), settings, now=later).key_id
    # Before the overlap the new key is not valid yet.
    early = datetime(2026, 11, 10, tzinfo=UTC)
    assert refusal(signed("crm-new", CRM_NEW, early), settings, early) == "not-yet-valid-key"


def test_a_revoked_key_is_refused_from_its_revocation_on(settings: Settings) -> None:
    before = datetime(2026, 11, 20, 23, 59, tzinfo=UTC)
    assert verify_request(signed("desk-1", DESK, before), settings, now=before).key_id == "desk-1"
    after = datetime(2026, 11, 21, tzinfo=UTC)
    assert refusal(signed("desk-1", DESK, after), settings, after) == "revoked-key"


def test_a_key_of_another_producer_is_refused_with_its_kind(settings: Settings) -> None:
    moment = datetime(2026, 11, 20, tzinfo=UTC)
    assert refusal(signed("desk-1", DESK, moment, "crm"), settings, moment) == "foreign-key"
    # The producer is signed: naming another after signing breaks the signature.
    envelope = signed("desk-1", DESK, moment, "support-desk")
    envelope["signature"]["producer"] = "crm"
    assert refusal(envelope, settings, moment) == "forged"


def test_a_revocation_in_the_file_takes_effect_at_the_next_request(settings: Settings) -> None:
    moment = datetime(2026, 11, 20, tzinfo=UTC)
    envelope = signed("crm-new", CRM_NEW, moment)
    assert verify_request(envelope, settings, now=moment).key_id == "crm-new"
    revoked = json.loads(json.dumps(KEYS))
    revoked["crm"]["crm-new"]["revoked_at"] = "2026-11-19T00:00:00Z"
    assert settings.request_keys_file is not None
    write_keys(settings.request_keys_file, revoked)
    assert refusal(envelope, settings, moment) == "revoked-key"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_others_can_read_is_refused_in_one_line(tmp_path: Path, mode: int) -> None:
    path = write_keys(tmp_path / "keys.json", KEYS, mode)
    with pytest.raises(ConfigError) as caught:
        load_key_ring(Settings(request_keys_file=path))
    message = str(caught.value)
    assert f"mode {mode:04o}" in message
    assert f"chmod 600 {path}" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"crm": {"k1": {"secret": "short"}}}, "crm.k1.secret"),
        ({"crm": {"k1": {"secret": DESK}}, "desk": {"k1": {"secret": CRM_NEW}}}, "unique"),
        ({"crm": {"bad id!": {"secret": DESK}}}, "key id"),
        ({"crm": {"k1": {"secret": DESK, "colour": "red"}}}, "colour"),
        ({"crm": {"k1": {"secret": DESK, "valid_from": "2026-11-20T00:00:00"}}}, "timezone"),
        (
            {
                "crm": {
                    "k1": {
                        "secret": DESK,
                        "valid_from": "2026-11-20T00:00:00Z",
                        "valid_until": "2026-11-19T00:00:00Z",
                    }
                }
            },
            "not after",
        ),
        (["crm"], "producer -> key id -> key"),
    ],
)
def test_a_bad_key_file_names_the_problem_and_no_secret(data: object, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_keys(data, "keys.yaml")
    message = str(caught.value)
    assert words in message
    assert not any(secret in message for secret in (*SECRETS, "short"))


def test_a_yaml_error_names_the_line_never_its_text(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(f"crm:\n  k1:\n    secret: [{DESK}\n", encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        load_key_ring(Settings(request_keys_file=path))
    assert "line" in str(caught.value)
    assert DESK not in str(caught.value)


def test_the_settings_key_and_a_file_key_named_default_conflict(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "keys.yaml", {"crm": {"default": {"secret": CRM_NEW}}})
    with pytest.raises(ConfigError, match="another id"):
        load_key_ring(Settings(request_signing_key=SecretStr(DEFAULT), request_keys_file=path))


def test_keys_describe_themselves_without_their_secret(settings: Settings) -> None:
    ring = load_key_ring(settings)
    assert sorted(ring.keys) == ["crm-new", "crm-old", "default", "desk-1"]
    text = json.dumps([key.describe() for key in ring.keys.values()]) + repr(ring)
    assert not any(secret in text for secret in SECRETS)
    assert ring.producer_of("desk-1") == "support-desk"
    assert KeyRing({}).get("crm-new") is None


def test_the_inbox_keeps_the_producer_and_the_key_id(settings: Settings, tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox.db", settings)
    moment = datetime.now(UTC) - timedelta(minutes=1)
    signed_now = sign_request(
        {**REQUEST, "requested_at": moment.isoformat()}, CRM_NEW, key_id="crm-new", signed_at=moment
    )
    inbox.accept(verify_request(signed_now, settings), "test")
    entry = inbox.get("dsr-keys-1")
    assert entry is not None
    assert (entry.producer, entry.key_id) == ("crm", "crm-new")
    assert entry.to_dict()["producer"] == "crm"
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("inbox"))
    assert not any(secret.encode() in data for secret in SECRETS)


def test_an_inbox_made_before_producers_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE requests (request_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,"
            " record_hashes TEXT NOT NULL, subject_hash TEXT, reason TEXT NOT NULL,"
            " requested_at TEXT NOT NULL, authenticated_by TEXT NOT NULL, source TEXT NOT NULL,"
            " received_at TEXT NOT NULL, deliveries INTEGER NOT NULL DEFAULT 1,"
            " state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, claimed_by TEXT,"
            " claimed_at TEXT, outcome TEXT)"
        )
        db.execute(
            "INSERT INTO requests VALUES ('old-1', 'f', '[]', NULL, 'r', '2026-11-01', "
            "'hmac:default', 'test', '2026-11-01', 1, 'pending', 0, NULL, NULL, NULL)"
        )
        db.commit()
    entry = Inbox(path, Settings()).get("old-1")
    assert entry is not None
    assert (entry.producer, entry.key_id) == (None, "default")


def test_the_file_is_read_by_its_owner_only_after_writing(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "keys.json", KEYS)
    assert os.stat(path).st_mode & 0o077 == 0
    assert sorted(load_key_ring(Settings(request_keys_file=path)).keys) == [
        "crm-new",
        "crm-old",
        "desk-1",
    ]

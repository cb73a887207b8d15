"""Settings: environment variables with one prefix, validated once, secrets kept secret."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from unlearn_ops.errors import ConfigError
from unlearn_ops.settings import ENV_PREFIX, Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No UNLEARN_OPS_* variable of the machine leaks into a test."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_defaults_need_no_environment() -> None:
    settings = load_settings()
    assert settings.device == "auto"
    assert settings.torch_threads == 1
    assert settings.max_parallel_shards == min(os.cpu_count() or 1, 1024)
    assert settings.tracking_uri is None
    assert settings.registry_uri is None
    assert settings.request_signing_key is None
    assert settings.request_bearer_token is None
    assert settings.request_max_age_seconds == 7 * 24 * 3600
    assert settings.intake_prefix == "deletion-requests/"
    assert settings.approval_required is False


def test_each_field_comes_from_its_prefixed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNLEARN_OPS_DEVICE", "cpu")
    monkeypatch.setenv("UNLEARN_OPS_TORCH_THREADS", "4")
    monkeypatch.setenv("UNLEARN_OPS_MAX_PARALLEL_SHARDS", "3")
    monkeypatch.setenv("UNLEARN_OPS_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", "s3cret")
    monkeypatch.setenv("UNLEARN_OPS_APPROVAL_REQUIRED", "true")
    monkeypatch.setenv("UNLEARN_OPS_COALESCE_SECONDS", "2.5")
    settings = load_settings()
    assert (settings.device, settings.torch_threads, settings.max_parallel_shards) == ("cpu", 4, 3)
    assert settings.tracking_uri == "http://127.0.0.1:5000"
    assert settings.registry_uri is None  # the tracking URI serves as registry
    assert isinstance(settings.request_signing_key, SecretStr)
    assert settings.request_signing_key.get_secret_value() == "s3cret"
    assert settings.approval_required is True
    assert settings.coalesce_seconds == 2.5


def test_secrets_never_show_in_the_settings_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", "signing-secret-value")
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_BEARER_TOKEN", "bearer-secret-value")
    monkeypatch.setenv("UNLEARN_OPS_ID_HASH_KEY", "hash-secret-value")
    settings = load_settings()
    for text in (str(settings), repr(settings), settings.model_dump_json()):
        for secret in ("signing-secret-value", "bearer-secret-value", "hash-secret-value"):
            assert secret not in text


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("UNLEARN_OPS_DEVICE", "tpu", "UNLEARN_OPS_DEVICE: Input should be 'auto', 'cpu' or"),
        ("UNLEARN_OPS_TORCH_THREADS", "0", "UNLEARN_OPS_TORCH_THREADS: Input should be greater"),
        ("UNLEARN_OPS_MAX_PARALLEL_SHARDS", "many", "UNLEARN_OPS_MAX_PARALLEL_SHARDS: Input"),
        ("UNLEARN_OPS_REQUEST_SIGNING_KEY", "", "UNLEARN_OPS_REQUEST_SIGNING_KEY: Value should"),
        ("UNLEARN_OPS_REQUEST_MAX_AGE_SECONDS", "59", "UNLEARN_OPS_REQUEST_MAX_AGE_SECONDS"),
        ("UNLEARN_OPS_REQUEST_CLOCK_SKEW_SECONDS", "3601", "UNLEARN_OPS_REQUEST_CLOCK_SKEW"),
        ("UNLEARN_OPS_COALESCE_SECONDS", "-1", "UNLEARN_OPS_COALESCE_SECONDS"),
    ],
)
def test_a_bad_value_is_one_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "settings (environment)" in message
    assert problem in message
    assert len(message.splitlines()) == 1


def test_a_config_error_never_repeats_a_secret_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_MAX_AGE_SECONDS", "10")
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", "kept-secret")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "kept-secret" not in str(caught.value)


def test_settings_are_frozen_and_refuse_unknown_fields() -> None:
    settings = Settings(device="cpu")
    with pytest.raises(ValueError, match="frozen"):
        settings.device = "cuda"  # type: ignore[misc]
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        Settings(colour="blue")  # type: ignore[call-arg]


def test_record_ids_hash_with_the_key_as_text() -> None:
    settings = Settings(id_hash_key=SecretStr("k1"))
    expected = hmac.new(b"k1", b"42", hashlib.sha256).hexdigest()
    assert settings.hash_record_id(42) == expected
    assert settings.hash_record_id("42") == expected  # the id's text, whatever its type
    assert Settings(id_hash_key=SecretStr("k2")).hash_record_id(42) != expected


def test_subject_hashes_are_apart_from_record_hashes() -> None:
    settings = Settings(id_hash_key=SecretStr("k1"))
    assert settings.hash_subject_id("42") != settings.hash_record_id("42")
    assert settings.hash_subject_id("42") == settings.hash_record_id("subject:42")


def test_a_relative_sqlite_tracking_uri_is_read_where_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNLEARN_OPS_TRACKING_URI", "sqlite:///stores/mlflow.db")
    monkeypatch.setenv("UNLEARN_OPS_REGISTRY_URI", "sqlite:///reg.db?timeout=5")
    settings = load_settings()
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'stores' / 'mlflow.db'}"
    assert settings.registry_uri == f"sqlite:///{tmp_path / 'reg.db'}?timeout=5"
    for kept in ("sqlite:////abs/mlflow.db", "http://127.0.0.1:5000", "sqlite:///:memory:"):
        monkeypatch.setenv("UNLEARN_OPS_TRACKING_URI", kept)
        assert load_settings().tracking_uri == kept

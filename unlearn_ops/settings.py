"""Settings: the *where* and the secrets, from environment variables prefixed `UNLEARN_OPS_`.

Params (`params.yaml`) say what to train; settings say where to run and store it. Nothing
here is read at import time: build `Settings()` when a command starts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from unlearn_ops.errors import ConfigError

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "UNLEARN_OPS_"

# Only for local use; a deployment sets UNLEARN_OPS_ID_HASH_KEY (see docs/ARCHITECTURE.md).
_DEVELOPMENT_ID_HASH_KEY = "unlearn-ops-development-key"


class Settings(BaseSettings):
    """Where unlearn-ops runs and keeps things; one environment variable per field."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Training device: cuda when available under 'auto', else cpu."
    )
    torch_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="Intra-op threads per shard training. Bit-exact certificates compare "
        "trainings made with the same value.",
    )
    max_parallel_shards: int = Field(
        default_factory=lambda: min(os.cpu_count() or 1, 1024),
        ge=1,
        le=1024,
        description="Shards trained at once (threads, one torch thread each by default); "
        "the number of CPUs when unset.",
    )
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; a sqlite store inside the workspace when unset.",
    )
    registry_uri: str | None = Field(
        None, description="MLflow registry URI; the tracking URI when unset."
    )
    id_hash_key: SecretStr = Field(
        SecretStr(_DEVELOPMENT_ID_HASH_KEY),
        description="HMAC key for the keyed hashes that stand in for record ids in ledgers.",
    )

    def hash_record_id(self, record_id: object) -> str:
        """Keyed hash (HMAC-SHA256) of a record id: what ledgers keep instead of the id."""
        key = self.id_hash_key.get_secret_value().encode()
        return hmac.new(key, str(record_id).encode(), hashlib.sha256).hexdigest()


def load_settings() -> Settings:
    """Settings from the environment.

    Raises:
        ConfigError: a variable holds a value that is not allowed.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("settings (environment)", problems) from exc

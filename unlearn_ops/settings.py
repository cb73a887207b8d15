"""Settings: the *where* and the secrets, from environment variables prefixed `UNLEARN_OPS_`.

Params (`params.yaml`) say what to train; settings say where to run and store it. Nothing
here is read at import time: build `Settings()` when a command starts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from unlearn_ops.errors import ConfigError

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "UNLEARN_OPS_"

# Only for local use; a deployment sets UNLEARN_OPS_ID_HASH_KEY (see docs/ARCHITECTURE.md).
_DEVELOPMENT_ID_HASH_KEY = "unlearn-ops-development-key"


def _cpu_count() -> int:
    """The number of CPUs here, at most 1024."""
    return min(os.cpu_count() or 1, 1024)


# How many things run at once: 1 to 1024, the number of CPUs when unset.
_Concurrency = Annotated[int, Field(default_factory=_cpu_count, ge=1, le=1024)]

# A secret that a feature needs: never empty; the feature is refused while it is unset.
_FeatureSecret = Annotated[SecretStr | None, Field(min_length=1)]


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
    max_parallel_shards: _Concurrency = Field(
        description="Shards trained at once (threads, one torch thread each by default); "
        "the number of CPUs when unset.",
    )
    task_runner: Literal["threads", "dask"] = Field(
        "threads",
        description="Where shard tasks run: a thread pool in the flow's process ('threads'), "
        "or Dask through prefect-dask ('dask': a local cluster of processes, or the cluster "
        "at UNLEARN_OPS_DASK_ADDRESS). See docs/SCALE.md.",
    )
    dask_address: str | None = Field(
        None,
        pattern=r"^(tcp|tls|inproc|ucx)://\S+$",
        description="Scheduler address of an existing Dask cluster (tcp://HOST:PORT); a "
        "LocalCluster of processes is started for each flow when unset.",
    )
    dask_workers: _Concurrency = Field(
        description="Worker processes of the LocalCluster (one thread each); the number of "
        "CPUs when unset (of GPUs, at most, when training on cuda).",
    )
    shard_exchange: str | None = Field(
        None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?$",
        description="s3://BUCKET/PREFIX where shard files and checkpoints travel to workers "
        "that do not share the workspace's disk, and back; each flow run uses a prefix of "
        "its own and deletes it at the end. Unset: workers read and write the workspace. "
        "See docs/SCALE.md.",
    )
    flower_home: Path | None = Field(
        None,
        description="FLWR_HOME of the workspace's Flower deployment (its config.toml names "
        "the SuperLink): with it, a drain removes the federation clients whose withdrawals "
        "reach the inbox; unset, they fail with what to do. See docs/FEDERATION_DEPLOYMENT.md.",
    )
    flower_bin: Path | None = Field(
        None,
        description="The Flower environment's bin folder; unset: the `.venv-flower/bin` "
        "beside the environment unlearn-ops runs in (where `make flower` builds it).",
    )
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; a sqlite store inside the workspace when unset.",
    )
    registry_uri: str | None = Field(
        None, description="MLflow registry URI; the tracking URI when unset."
    )

    @field_validator("tracking_uri", "registry_uri")
    @classmethod
    def _absolute_sqlite_path(cls, uri: str | None) -> str | None:
        """A relative sqlite path is read where the setting was given (issue 11, finding 1).

        `sqlite:///mlflow.db` names a file relative to the current folder; later code runs
        in other folders (DVC changes folder while it works), so the path is made absolute
        once, here, against the folder the user stood in.
        """
        prefix = "sqlite:///"
        if uri is None or not uri.startswith(prefix) or uri.startswith(prefix + "/"):
            return uri
        path, _, query = uri.removeprefix(prefix).partition("?")
        if path in ("", ":memory:"):
            return uri
        absolute = os.path.abspath(path)
        return f"{prefix}{absolute}" + (f"?{query}" if query else "")

    id_hash_key: SecretStr = Field(
        SecretStr(_DEVELOPMENT_ID_HASH_KEY),
        description="HMAC key for the keyed hashes that stand in for record ids in ledgers.",
    )

    request_signing_key: _FeatureSecret = Field(
        None,
        description="Shared secret of the HMAC-SHA256 signatures that deletion requests carry; "
        "requests are refused while it is unset.",
    )
    request_keys_file: Path | None = Field(
        None,
        description="A JSON or YAML file of producer -> key id -> secret, valid_from, "
        "valid_until, revoked_at: one key per producing system, rotated and revoked there "
        "(mode 0600; see unlearn_ops.deletion.keys). Read at each verification.",
    )
    receipt_signing_key: _FeatureSecret = Field(
        None,
        description="HMAC-SHA256 key of the receipts given to data subjects "
        "(`unlearn-ops receipt`); receipts are refused while it is unset.",
    )
    dp_noise_key: _FeatureSecret = Field(
        None,
        description="Secret the DP-SGD noise of shard training is drawn from (with "
        "`training.dp.enabled`); kept by the operator, never released: the same key "
        "replays a training bit for bit, and DP training is refused while it is unset.",
    )
    request_bearer_token: _FeatureSecret = Field(
        None,
        description="Bearer token accepted instead of a signature on the HTTP intake; "
        "unset: only signed requests are accepted there too.",
    )
    request_max_age_seconds: int = Field(
        7 * 24 * 3600,
        ge=60,
        description="A signature older than this is expired (a request may also carry an "
        "earlier expires_at of its own).",
    )
    request_clock_skew_seconds: int = Field(
        300, ge=0, le=3600, description="How far in the future a signature time may be."
    )
    coalesce_seconds: float = Field(
        10.0,
        ge=0.0,
        le=3600.0,
        description="Requests arriving within this window are applied as one batch (one "
        "retraining per affected shard).",
    )
    approval_required: bool = Field(
        False,
        description="Event-driven forget runs stop after planning and wait for an approval.",
    )
    approval_timeout_seconds: int = Field(
        24 * 3600, ge=1, description="How long a forget run waits for its approval."
    )
    intake_bucket: str | None = Field(None, description="S3 bucket of the request intake.")
    intake_prefix: str = Field(
        "deletion-requests/", description="Key prefix where request files are dropped."
    )
    intake_rejected_prefix: str = Field(
        "rejected/", description="Key prefix where refused request files are moved."
    )
    intake_queue_url: str | None = Field(
        None, description="SQS queue receiving the bucket's object-created notifications."
    )
    prefect_server: Literal["local", "ephemeral"] = Field(
        "local",
        description="Without PREFECT_API_URL, CLI flows use a Prefect server started once per "
        "workspace in the background (`local`), or Prefect's temporary one per process.",
    )
    warm_runner: bool = Field(
        True,
        description="`train`, `forget`, `rollback` and `retrain-exact` run in a child of the "
        "workspace's warm runner, a background process with the libraries imported "
        "(unlearn_ops.cli.warm); false runs them in the command's own process.",
    )

    def flower_executables(self) -> Path:
        """The Flower environment's bin folder: `flower_bin`, or the checkout's `.venv-flower`."""
        if self.flower_bin is not None:
            return self.flower_bin.resolve()
        return Path(sys.prefix).resolve().parent / ".venv-flower" / "bin"

    def hash_record_id(self, record_id: object) -> str:
        """Keyed hash (HMAC-SHA256) of a record id: what ledgers keep instead of the id."""
        key = self.id_hash_key.get_secret_value().encode()
        return hmac.new(key, str(record_id).encode(), hashlib.sha256).hexdigest()

    def hash_subject_id(self, subject_id: str) -> str:
        """Keyed hash of a data subject's id (canonical text), apart from record ids."""
        return self.hash_record_id(f"subject:{subject_id}")


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

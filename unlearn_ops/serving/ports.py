"""The model registry port: what the workflow and compliance ask of a registry.

:class:`~unlearn_ops.adapters.mlflow.registry.MlflowRegistry` implements it on MLflow;
:class:`~unlearn_ops.testing.InMemoryRegistry` is the fake that tests inject (one contract
test class runs over both, tests/serving/test_registry_contract.py). Versions are named by number
(`"3"`) or, where a method says so, by alias (`"champion"`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from unlearn_ops.serving.versions import DeletedVersion, NewVersion, ServedShards, VersionInfo

__all__ = ["ModelRegistry"]


class ModelRegistry(Protocol):
    """The registered model of one workspace: versions, their tags, and aliases."""

    def log_version(self, new: NewVersion) -> VersionInfo:
        """Register `new` as a version (not aliased) carrying its provenance's tags and description.

        Raises:
            RegistryError: the backend refused.
        """
        ...

    def versions(self) -> list[VersionInfo]:
        """Every version, oldest first (empty before the first)."""
        ...

    def get_version(self, version: str) -> VersionInfo:
        """One version, by number or alias.

        Raises:
            VersionNotFoundError: no such version or alias.
        """
        ...

    def aliases(self) -> dict[str, str]:
        """Alias -> version."""
        ...

    def alias_version(self, alias: str) -> str | None:
        """The version an alias points at, or None."""
        ...

    def first_honouring(self, request_id: str, *, passed_only: bool = True) -> VersionInfo | None:
        """The oldest version whose `honoured_requests` holds `request_id` (gates passed)."""
        ...

    def set_alias(self, alias: str, version: str) -> None:
        """Point `alias` at `version` (moving it from any other).

        Raises:
            RegistryError: no such version.
        """
        ...

    def set_version_tag(self, version: str, key: str, value: str) -> None:
        """Set the `unlearn.<key>` tag of a version.

        Raises:
            RegistryError: no such version.
        """
        ...

    def delete_version(self, version: str) -> DeletedVersion:
        """Delete a version for good, with its run, logged model and artifacts.

        Raises:
            RegistryError: no such version.
        """
        ...

    def load_pyfunc(self, alias_or_version: str = "champion") -> Any:
        """The served model of a version or alias: `predict(frame)` returns a frame with
        `prediction` and `probability_0..K-1` (see :mod:`unlearn_ops.serving.predictor`).

        Raises:
            RegistryError: no such version or alias, or its model cannot be loaded.
        """
        ...

    def served_shards(self, alias_or_version: str = "champion") -> ServedShards | None:
        """The shard weights' SHA-256 and the params of a version, without loading its model.

        None for a version whose model names no shard blobs (one logged before the blob
        store, an adopted or monolithic model): load it with `load_pyfunc` instead.

        Raises:
            VersionNotFoundError: no such version or alias.
            RegistryError: the backend refused.
        """
        ...

    def logged_model_versions(self) -> dict[str, str]:
        """Logged model id -> the version whose model it is."""
        ...

    def artifact_dirs(self) -> list[Path]:
        """Local folders that hold the versions' artifacts (none for a remote store)."""
        ...

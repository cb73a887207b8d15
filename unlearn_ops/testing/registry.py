"""An in-memory model registry: the :class:`~unlearn_ops.serving.ports.ModelRegistry` fake.

It keeps what the workflow reads back (versions, their tags and description, aliases) and
what `log_version` was given, but no model files. Errors are the real adapter's:
:class:`VersionNotFoundError` for an unknown version or alias, :class:`RegistryError` for
a change to a version that does not exist.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn_ops.errors import RegistryError, VersionNotFoundError
from unlearn_ops.serving.provenance import TAG_PREFIX
from unlearn_ops.serving.versions import DeletedVersion, NewVersion, ServedShards, VersionInfo

__all__ = ["InMemoryRegistry", "LoggedVersion"]


@dataclass
class LoggedVersion:
    """One version as the fake holds it.

    Attributes:
        run_id: a made-up run id.
        model_id: a made-up logged model id (`m-...`).
        created_at: milliseconds since the epoch.
        description: the version's description.
        tags: the version's tags (full keys, `unlearn.*`).
        params: the run params `log_version` was given.
        metrics: the run metrics it was given.
        model_files: the names of the model's artifacts.
        model_bytes: the artifacts' contents, kept so that the version can be loaded.
        input_example: the example the version would carry beside its model (a frame).
    """

    run_id: str
    model_id: str
    created_at: int
    description: str
    tags: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    model_files: tuple[str, ...] = ()
    model_bytes: dict[str, bytes] = field(default_factory=dict)
    input_example: Any = None


class InMemoryRegistry:
    """The registered model of one workspace, in memory.

    Args:
        model_name: the registered model's name (it appears in error messages).
    """

    def __init__(self, model_name: str = "in-memory") -> None:
        self.model_name = model_name
        self.logged: dict[str, LoggedVersion] = {}
        self._aliases: dict[str, str] = {}
        self._next_version = 1

    def log_version(self, new: NewVersion) -> VersionInfo:
        """Register a new version carrying the provenance's tags (not aliased)."""
        number = str(self._next_version)
        self._next_version += 1
        self.logged[number] = LoggedVersion(
            run_id=uuid.uuid4().hex,
            model_id=f"m-{uuid.uuid4().hex}",
            created_at=int(time.time() * 1000),
            description=new.description,
            tags=dict(new.provenance.tags()),
            params=dict(new.params),
            metrics=dict(new.metrics),
            model_files=tuple(sorted(new.model_files)),
            model_bytes={name: Path(path).read_bytes() for name, path in new.model_files.items()},
            input_example=new.signature_frames[0] if new.signature_frames else None,
        )
        return self.get_version(number)

    def _info(self, number: str) -> VersionInfo:
        stored = self.logged[number]
        return VersionInfo(
            version=number,
            run_id=stored.run_id,
            created_at=stored.created_at,
            description=stored.description,
            tags=dict(stored.tags),
            aliases=tuple(sorted(a for a, v in self._aliases.items() if v == number)),
        )

    def versions(self) -> list[VersionInfo]:
        """Every version, oldest first."""
        return [self._info(number) for number in sorted(self.logged, key=int)]

    def get_version(self, version: str) -> VersionInfo:
        """One version, by number or alias.

        Raises:
            VersionNotFoundError: no such version or alias.
        """
        number = self._aliases.get(version, version)
        if number not in self.logged:
            raise VersionNotFoundError(self.model_name, version, sorted(self.logged, key=int))
        return self._info(number)

    def aliases(self) -> dict[str, str]:
        """Alias -> version."""
        return dict(self._aliases)

    def alias_version(self, alias: str) -> str | None:
        """The version an alias points at, or None."""
        return self._aliases.get(alias)

    def first_honouring(self, request_id: str, *, passed_only: bool = True) -> VersionInfo | None:
        """The oldest version that honours `request_id` (whose gates passed, by default)."""
        for info in self.versions():
            if request_id in info.honoured_requests and (info.gates_passed or not passed_only):
                return info
        return None

    def _existing(self, version: str, operation: str) -> LoggedVersion:
        try:
            return self.logged[version]
        except KeyError:
            raise RegistryError(
                operation, f"Model Version (name={self.model_name}, version={version}) not found"
            ) from None

    def set_alias(self, alias: str, version: str) -> None:
        """Point `alias` at `version`.

        Raises:
            RegistryError: no such version.
        """
        self._existing(version, f"setting alias {alias}")
        self._aliases[alias] = version

    def set_version_tag(self, version: str, key: str, value: str) -> None:
        """Set the `unlearn.<key>` tag of a version.

        Raises:
            RegistryError: no such version.
        """
        self._existing(version, "tagging a version").tags[f"{TAG_PREFIX}{key}"] = value

    def delete_version(self, version: str) -> DeletedVersion:
        """Delete a version and the aliases pointing at it.

        Raises:
            RegistryError: no such version.
        """
        stored = self._existing(version, f"deleting version {version}")
        del self.logged[version]
        self._aliases = {a: v for a, v in self._aliases.items() if v != version}
        return DeletedVersion(version, stored.run_id, stored.model_id, (), hard=True)

    def load_pyfunc(self, alias_or_version: str = "champion") -> Any:
        """The served model of a version or alias, built from the bytes kept at logging.

        Raises:
            RegistryError: no such version or alias.
        """
        import tempfile

        from unlearn_ops.serving.predictor import EnsemblePredictor

        number = self._aliases.get(alias_or_version, alias_or_version)
        stored = self._existing(number, f"loading the model of {alias_or_version}")
        with tempfile.TemporaryDirectory(prefix="unlearn-fake-model-") as folder:
            artifacts = {}
            for name, data in stored.model_bytes.items():
                (Path(folder) / name).write_bytes(data)
                artifacts[name] = Path(folder) / name
            return EnsemblePredictor.from_artifacts(artifacts)

    def served_shards(self, alias_or_version: str = "champion") -> ServedShards | None:
        """The SHA-256 of each shard's bytes kept at logging, and its params file.

        Raises:
            VersionNotFoundError: no such version or alias.
        """
        import hashlib

        number = self.get_version(alias_or_version).version
        stored = self.logged[number]
        shards = sorted(name for name in stored.model_bytes if name.startswith("shard-"))
        if not shards or "params" not in stored.model_bytes:
            return None
        return ServedShards(
            number,
            tuple(hashlib.sha256(stored.model_bytes[name]).hexdigest() for name in shards),
            stored.model_bytes["params"].decode("utf-8"),
        )

    def logged_model_versions(self) -> dict[str, str]:
        """Logged model id -> its version."""
        return {stored.model_id: number for number, stored in self.logged.items()}

    def artifact_dirs(self) -> list[Path]:
        """None: the fake keeps its model files in memory."""
        return []

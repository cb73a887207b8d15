"""Workspaces: a git + DVC repository holding one unlearnable model's data, params and state.

Layout (the ensemble's own files are described in :mod:`unlearn_ops.sisa.ensemble`)::

    WS/params.yaml        what to train (S, R, seed, model, gates, dataset, model name)
    WS/dvc.yaml, dvc.lock the pipeline (rendered from params.yaml) and its last run
    WS/forgotten.json     keyed hashes of forgotten ids (a dependency of `prepare`)
    WS/ledger.jsonl       the request ledger (:mod:`unlearn_ops.deletion.ledger`)
    WS/metrics.json       held-out accuracy of the served ensemble
    WS/registry.json      the MLflow version that the workspace state was registered as
    WS/mlflow.db, WS/mlartifacts/   the embedded MLflow store (unless settings name one)
    WS/checkpoints/       stage checkpoints (a cache: ignored by git and DVC)
    WS/.unlearn-ops/inbox.sqlite   requests received, not yet served
                                   (:mod:`unlearn_ops.deletion.inbox`)

A workspace hands out what acts on it: its lock (one flow changes it at a time), its
model registry and its data lineage. Both are ports (:class:`~unlearn_ops.serving.ports.
ModelRegistry`, :class:`~unlearn_ops.workflow.ports.DataLineage`): the real adapters
(MLflow, git + DVC) by default, built on first use with their imports inside, or the
implementations given to :meth:`Workspace.open` (the fakes of :mod:`unlearn_ops.testing`).
This module itself knows paths and files only.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_ops.deletion.inbox import Inbox
from unlearn_ops.deletion.ledger import Ledger
from unlearn_ops.errors import (
    InvalidRequestError,
    StoreError,
    VersionNotFoundError,
    VersionPurgedError,
    WorkspaceNotFoundError,
)
from unlearn_ops.params import Params, load_params
from unlearn_ops.settings import Settings, load_settings
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.workflow.dvc_pipeline import render_dvc_yaml
from unlearn_ops.workflow.location import PARAMS_FILE, find_workspace

if TYPE_CHECKING:
    from unlearn_ops.serving.ports import ModelRegistry
    from unlearn_ops.serving.versions import VersionInfo
    from unlearn_ops.workflow.ports import DataLineage

__all__ = [
    "PARAMS_FILE",
    "Workspace",
    "dataset_source_for",
    "find_workspace",
    "write_workspace_files",
]

GITIGNORE = """\
# unlearn-ops: caches and the embedded MLflow store stay out of git
/checkpoints/
/mlflow.db
/mlartifacts/
/.unlearn-ops/
"""

DVCIGNORE = """\
/checkpoints/
/mlartifacts/
/mlflow.db
"""


@dataclass(frozen=True)
class Workspace:
    """An opened workspace. Build with :meth:`open` (reads params) rather than by hand.

    Attributes:
        root: the workspace directory.
        params: its params.yaml.
        settings: the environment settings.
        model_registry: the registry to use instead of the workspace's MLflow store.
        data_lineage: the lineage to use instead of the workspace's git + DVC repository.
    """

    root: Path
    params: Params
    settings: Settings
    # Fields (not private attributes) so that a copy of the workspace keeps them: Prefect
    # rebuilds dataclass arguments of tasks field by field.
    model_registry: ModelRegistry | None = field(default=None, compare=False, repr=False)
    data_lineage: DataLineage | None = field(default=None, compare=False, repr=False)

    @classmethod
    def open(
        cls,
        root: str | Path,
        settings: Settings | None = None,
        *,
        registry: ModelRegistry | None = None,
        lineage: DataLineage | None = None,
    ) -> Workspace:
        """Open the workspace at `root` (its params.yaml must exist).

        Args:
            root: the workspace directory.
            settings: the settings (from the environment when None).
            registry: a model registry to use (the workspace's MLflow store when None).
            lineage: a data lineage to use (the workspace's git + DVC when None).

        Raises:
            WorkspaceNotFoundError: no params.yaml there.
            ConfigError: params.yaml or the settings do not validate.
        """
        root = Path(root).resolve()
        if not (root / PARAMS_FILE).is_file():
            raise WorkspaceNotFoundError(root)
        return cls(
            root, load_params(root / PARAMS_FILE), settings or load_settings(), registry, lineage
        )

    def reopen(self) -> Workspace:
        """The workspace opened again (after params.yaml changed), with the same ports."""
        return Workspace.open(
            self.root, self.settings, registry=self.model_registry, lineage=self.data_lineage
        )

    @contextlib.contextmanager
    def lock(self, timeout: float = 600.0) -> Iterator[None]:
        """Hold the workspace's lock: one flow changes a workspace at a time.

        Raises:
            InvalidRequestError: another flow held it for `timeout` seconds.
        """
        from filelock import FileLock, Timeout

        path = self.root / ".unlearn-ops" / "lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=timeout)
        except Timeout as exc:
            raise InvalidRequestError(
                f"workspace {self.root} is busy with another flow",
                f"wait for it to finish (or remove {path} if no flow runs)",
            ) from exc
        try:
            self._clear_stale_git_lock()
            yield
        finally:
            lock.release()

    def _clear_stale_git_lock(self) -> None:
        """Remove `.git/index.lock` left by a process killed in the middle of a commit.

        Every unlearn-ops writer of a workspace holds the workspace lock, so while we hold
        it no git command of ours runs there: a lock file left is one that a killed run left.
        """
        stale = self.root / ".git" / "index.lock"
        if stale.exists():
            logging.getLogger("unlearn_ops").warning(
                "removing %s left by an interrupted run", stale
            )
            stale.unlink(missing_ok=True)

    def registry(self) -> ModelRegistry:
        """The workspace's registered model: the one given to :meth:`open`, else MLflow's."""
        return self.model_registry or self._mlflow_registry

    def find_version(self, reference: str) -> VersionInfo:
        """The version a user names (number or alias); a purged one is said to be purged.

        Raises:
            VersionPurgedError: a purge deleted it (the ledger says when, and for whom).
            VersionNotFoundError: the registry never held it.
        """
        try:
            return self.registry().get_version(reference)
        except VersionPurgedError:
            raise
        except VersionNotFoundError as missing:
            purged = self.ledger.purged_versions().get(str(reference))
            if purged is None:
                raise
            raise VersionPurgedError(missing, *purged) from missing

    @cached_property
    def _mlflow_registry(self) -> ModelRegistry:
        from unlearn_ops.adapters.mlflow.registry import MlflowRegistry

        embedded = self.settings.tracking_uri is None
        return MlflowRegistry(
            self.tracking_uri,
            self.registry_uri,
            self.model_name,
            artifact_location=self.artifact_location if embedded else None,
        )

    def lineage(self) -> DataLineage:
        """The workspace's data lineage: the one given to :meth:`open`, else git + DVC."""
        return self.data_lineage or self._dvc_lineage

    @cached_property
    def _dvc_lineage(self) -> DataLineage:
        from unlearn_ops.adapters.dvc.lineage import DvcLineage

        return DvcLineage(self.root)

    @property
    def params_path(self) -> Path:
        """params.yaml."""
        return self.root / PARAMS_FILE

    @property
    def metrics_path(self) -> Path:
        """metrics.json (held-out accuracy of the served ensemble)."""
        return self.root / "metrics.json"

    @property
    def registry_path(self) -> Path:
        """registry.json (which MLflow version the current state is)."""
        return self.root / "registry.json"

    @property
    def federation_dir(self) -> Path:
        """federation/ (a Flower federation's members, runs and served groups, issue 13)."""
        return self.root / "federation"

    @property
    def is_federation(self) -> bool:
        """Whether the workspace keeps a Flower federation (`federation/federation.json`)."""
        return (self.federation_dir / "federation.json").is_file()

    def client_removal_requests(self) -> set[str]:
        """The requests whose federation client was removed (none without a federation)."""
        state = self.read_json(self.federation_dir / "federation.json") or {}
        return {str(r) for entry in state.get("removed", []) for r in entry.get("requests", [])}

    @cached_property
    def ledger(self) -> Ledger:
        """The request ledger."""
        return Ledger(self.root / "ledger.jsonl")

    @cached_property
    def inbox(self) -> Inbox:
        """The durable inbox of deletion requests (not versioned: `.unlearn-ops/`)."""
        return Inbox(self.root / ".unlearn-ops" / "inbox.sqlite", self.settings)

    @cached_property
    def ensemble(self) -> SisaEnsemble:
        """The SISA ensemble kept in this workspace."""
        return SisaEnsemble(self.root, self.params, self.settings)

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: from settings, else the workspace's sqlite store."""
        return self.settings.tracking_uri or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        """MLflow registry URI: from settings, else the tracking URI."""
        return self.settings.registry_uri or self.tracking_uri

    @property
    def artifact_location(self) -> str:
        """Artifact root for the workspace's experiment, when the store is embedded."""
        return (self.root / "mlartifacts").as_uri()

    @property
    def model_name(self) -> str:
        """Registered model name."""
        return self.params.registry.model_name

    def read_json(self, path: Path) -> dict[str, Any] | None:
        """A JSON file of the workspace, or None when absent."""
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise StoreError(path, f"not valid JSON ({exc})") from exc
        return data

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        """Write a JSON file of the workspace (sorted keys, so git diffs stay small)."""
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def dataset_source_for(root: Path, source: str, builtin: Collection[str]) -> str:
    """How params.yaml names a dataset that the user gave as `source`, for a workspace at `root`.

    A file path is taken as typed, against the current directory (issue 11: it was
    read against the workspace); it is stored relative to `root` when the file lies inside
    it (the workspace moves with its data), else as an absolute path. Names in `builtin`
    stay names. The workspace reads the stored value against `root`.
    """
    if source in builtin:
        return source
    path = Path(source).expanduser().resolve()
    root = root.resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def write_workspace_files(root: Path, params: Params) -> None:
    """Write params.yaml, dvc.yaml, forgotten.json and the ignore files of a new workspace.

    Raises:
        StoreError: `root` holds a params.yaml already.
    """
    if (root / PARAMS_FILE).exists():
        raise StoreError(root / PARAMS_FILE, "exists already", "open it, or init another directory")
    root.mkdir(parents=True, exist_ok=True)
    (root / PARAMS_FILE).write_text(params.to_yaml(), encoding="utf-8")
    (root / "dvc.yaml").write_text(render_dvc_yaml(params), encoding="utf-8")
    forgotten = root / "forgotten.json"
    if not forgotten.exists():
        forgotten.write_text(json.dumps({"hashes": []}) + "\n", encoding="utf-8")
    for name, text in ((".gitignore", GITIGNORE), (".dvcignore", DVCIGNORE)):
        path = root / name
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        if text not in existing:
            path.write_text(existing + text, encoding="utf-8")

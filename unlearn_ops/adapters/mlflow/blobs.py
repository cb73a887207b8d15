"""Shard weights stored once, by content, beside the experiment's runs (issue 15, part 3).

A version used to copy every shard's weights into its logged model, so a forget that
retrained one shard of eight re-uploaded all eight. Now each weights file is a *blob*
named by the SHA-256 of its bytes, stored once under the experiment's artifact root:

    <experiment artifact root>/blobs/sha256/<first two hex digits>/<sha256>

and a version's pyfunc model holds a small manifest (`shards.json`) naming the blob of
each shard and the store's URI. A forget therefore adds the retrained shards' blobs and
some metadata; the unchanged shards are referenced, not copied.

Who can load a version: whoever can read the experiment's artifacts, the same reach the
logged model itself needs. The store's URI is the experiment's artifact location, so a
local store (`file://`) serves the machine or shared disk it lives on, an S3 store any
client with its credentials, and a tracking server's proxied store (`mlflow-artifacts:`)
any client of that server (`mlflow.pyfunc.load_model`, `mlflow models serve`). Every blob
is checked against its hash when loaded. Versions logged before the store existed carry
their weights as artifacts (`shard-000`, ...) and keep loading as they always did.

Deleting: a blob is deleted only when no remaining version's manifest names it (a
reference count over the registered versions, :func:`unreferenced_blobs`); the registry
runs that sweep after deleting a version, so a purge removes the weights that only the
versions it deleted held, and never those a kept version still serves.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from unlearn_ops.errors import RegistryError

__all__ = [
    "MANIFEST_ARTIFACT",
    "MANIFEST_FORMAT",
    "BlobStore",
    "file_sha256",
    "local_artifacts",
    "read_manifest",
    "unreferenced_blobs",
    "write_manifest",
]

MANIFEST_ARTIFACT = "shards"  # the pyfunc artifact key of the manifest
MANIFEST_FORMAT = "unlearn-ops/shard-blobs/1"
_PREFIX = "sha256"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (what names its blob)."""
    with Path(path).open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _blob_path(digest: str) -> str:
    return f"{_PREFIX}/{digest[:2]}/{digest}"


class BlobStore:
    """The content-addressed store of shard weights under one artifact URI.

    Args:
        uri: the store's root, `<experiment artifact location>/blobs`.
        tracking_uri: the MLflow store or server the URI belongs to (an `mlflow-artifacts:`
            URI is resolved against it); MLflow's global tracking URI when None.

    Construction does no I/O; MLflow's artifact repository is made on first use (it
    speaks every scheme MLflow does: local paths, S3, `mlflow-artifacts:` of a server).
    """

    def __init__(self, uri: str, tracking_uri: str | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.tracking_uri = tracking_uri
        self._repository: Any = None

    @property
    def repository(self) -> Any:
        """MLflow's artifact repository of the store."""
        if self._repository is None:
            from mlflow.store.artifact.artifact_repository_registry import (
                get_artifact_repository,
            )

            self._repository = get_artifact_repository(self.uri, self.tracking_uri)
        return self._repository

    def uri_of(self, digest: str) -> str:
        """The URI of one blob."""
        return f"{self.uri}/{_blob_path(digest)}"

    def contains(self, digest: str) -> bool:
        """Whether the blob is stored already."""
        folder = f"{_PREFIX}/{digest[:2]}"
        return any(
            Path(info.path).name == digest for info in self.repository.list_artifacts(folder)
        )

    def put(self, path: str | Path) -> tuple[str, bool]:
        """Store a file unless its content is there already.

        Returns:
            Its SHA-256, and whether it was uploaded now (False: referenced).
        """
        digest = file_sha256(path)
        if self.contains(digest):
            return digest, False
        with tempfile.TemporaryDirectory(prefix="unlearn-blob-") as scratch:
            named = Path(scratch) / digest  # the repository names the blob by the file's name
            shutil.copyfile(path, named)
            self.repository.log_artifact(str(named), artifact_path=f"{_PREFIX}/{digest[:2]}")
        return digest, True

    def fetch(self, digest: str, directory: Path) -> Path:
        """A local file holding the blob, checked against its hash.

        A local store answers with the stored file itself (nothing is copied); another
        store downloads into `directory`.

        Raises:
            RegistryError: the blob is missing or its bytes do not match its hash.
        """
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        # A local store's blob is read where it lies; other stores download a copy.
        local_store = isinstance(self.repository, LocalArtifactRepository)
        try:
            local = Path(
                self.repository.download_artifacts(
                    _blob_path(digest), None if local_store else str(directory)
                )
            )
        except Exception as exc:  # MLflow raises OSError, MlflowException, botocore's
            raise RegistryError(
                "reading shard weights", f"blob {digest[:12]} of {self.uri}: {exc}"
            ) from exc
        if not local.is_file() or file_sha256(local) != digest:
            raise RegistryError(
                "reading shard weights",
                f"blob {digest[:12]} of {self.uri} does not hold the bytes its hash names",
            )
        return local

    def digests(self) -> set[str]:
        """Every blob in the store."""
        found: set[str] = set()
        for folder in self.repository.list_artifacts(_PREFIX):
            if folder.is_dir:
                found.update(Path(i.path).name for i in self.repository.list_artifacts(folder.path))
        return found

    def delete(self, digest: str) -> str:
        """Delete one blob; returns its URI."""
        self.repository.delete_artifacts(_blob_path(digest))
        return self.uri_of(digest)


def write_manifest(path: Path, store: BlobStore, shards: Mapping[str, str]) -> Path:
    """Write the manifest of a version: shard artifact key -> blob SHA-256, and the store."""
    path.write_text(
        json.dumps(
            {"format": MANIFEST_FORMAT, "store": store.uri, "shards": dict(sorted(shards.items()))},
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def read_manifest(path: str | Path) -> tuple[str, dict[str, str]]:
    """The store URI and shard key -> SHA-256 of a manifest.

    Raises:
        RegistryError: not a manifest of this format.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError("reading the shard manifest", f"{path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise RegistryError(
            "reading the shard manifest",
            f"{path} is not a {MANIFEST_FORMAT} manifest; this unlearn-ops is too old for it",
        )
    return str(data["store"]), {str(k): str(v) for k, v in data["shards"].items()}


def local_artifacts(artifacts: Mapping[str, str], directory: Path) -> dict[str, str]:
    """A version's pyfunc artifacts with every shard as a local file.

    A version logged with the manifest gets `shard-NNN` -> the blob's local file (fetched
    into `directory` unless the store is local); a version logged before carries its
    `shard-NNN` files already and is returned as it is.
    """
    if MANIFEST_ARTIFACT not in artifacts:
        return dict(artifacts)
    uri, shards = read_manifest(artifacts[MANIFEST_ARTIFACT])
    store = BlobStore(uri)
    resolved = {k: v for k, v in artifacts.items() if k != MANIFEST_ARTIFACT}
    for key, digest in shards.items():
        resolved[key] = str(store.fetch(digest, directory))
    return resolved


def unreferenced_blobs(stored: Iterable[str], referenced: Iterable[str]) -> set[str]:
    """The stored blobs that no version references: what may be deleted (reference count 0)."""
    return set(stored) - set(referenced)

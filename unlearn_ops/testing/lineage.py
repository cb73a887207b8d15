"""An in-memory data lineage: the :class:`~unlearn_ops.workflow.ports.DataLineage` fake.

Each revision is a snapshot of the workspace's versioned files: the small files a real
revision commits to git (:data:`~unlearn_ops.workflow.revisions.VERSIONED_FILES`) and the
outputs DVC tracks (shard tables, held-out table, manifest, weights). Small files are
readable as text (`read_git_file`), every file as bytes (`read_at_revision`), like git +
DVC. Nothing is written to the workspace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

from unlearn_ops.errors import LineageError
from unlearn_ops.workflow.revisions import VERSIONED_FILES, DataRevision

if TYPE_CHECKING:
    from unlearn_ops.workflow.ports import RevisionScope

__all__ = ["InMemoryLineage"]

# What the stages of dvc.yaml output (unlearn_ops.workflow.dvc_pipeline), besides models/.
DVC_OUTPUTS = ("data/shards", "data/holdout.parquet", "ensemble.json", "models")
# DVC outputs inside folders that git also versions (models/*.json are git files).
DVC_SUFFIXES = (".pt", ".parquet")


def _under(path: str, names: Sequence[str]) -> bool:
    return any(path == name or path.startswith(f"{name}/") for name in names)


def _is_git_file(path: str) -> bool:
    return _under(path, VERSIONED_FILES) and not path.endswith(DVC_SUFFIXES)


@dataclass(frozen=True)
class _Revision:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes] = field(repr=False)


class InMemoryLineage:
    """The versioned history of one workspace's files, in memory.

    Args:
        root: the workspace directory (read when a revision is recorded).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.revisions: list[_Revision] = []
        self.tags: dict[str, str] = {}
        self.recorded: set[str] = set()  # small files named to `record_files`, as git tracks

    def _snapshot(self) -> dict[str, bytes]:
        files = {}
        for name in dict.fromkeys((*VERSIONED_FILES, *DVC_OUTPUTS, *sorted(self.recorded))):
            path = self.root / name
            found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in found:
                if file.is_file():
                    files[file.relative_to(self.root).as_posix()] = file.read_bytes()
        return files

    def _commit(self, message: str, files: dict[str, bytes]) -> str:
        parent = self.revisions[-1].sha if self.revisions else None
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"{parent}\n{message}\n{len(self.revisions)}\n".encode())
        for name, data in sorted(files.items()):
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        self.revisions.append(_Revision(digest.hexdigest(), parent, message, files))
        return digest.hexdigest()

    def _resolve(self, rev: str) -> _Revision:
        sha = self.tags.get(rev, rev)
        if sha == "HEAD" and self.revisions:
            return self.revisions[-1]
        matches = [r for r in self.revisions if len(sha) >= 4 and r.sha.startswith(sha)]
        if len(matches) != 1:
            raise LineageError("reading a revision", f"{rev!r} is not a revision of {self.root}")
        return matches[0]

    def init_repository(self) -> str:
        """Record the files present as the first revision (kept if there is one)."""
        files = self._snapshot()
        if not self.revisions or self.revisions[-1].files != files:
            self._commit("unlearn-ops: new workspace", files)
        return self.head()

    def record_revision(self, message: str, **scope: Unpack[RevisionScope]) -> DataRevision:
        """Record the versioned files as a new revision (none if nothing changed); tag it.

        Every revision is whole: `stages` (which outputs changed) is not needed here.
        """
        files = self._snapshot()
        if not self.revisions or self.revisions[-1].files != files:
            self._commit(message, files)
        tags = tuple(scope.get("tags", ()))
        for tag in tags:
            self.tags[tag] = self.head()
        revision = self.current_revision(scope.get("shard_ids", ()))
        return DataRevision(revision.git_sha, revision.shards_md5, revision.shard_md5s, tags)

    def record_files(self, message: str, paths: Sequence[str], tags: Sequence[str] = ()) -> str:
        """The head revision's files with these paths as they are now, as a new revision
        (none if unchanged); tag it; the head sha.

        Raises:
            LineageError: no revision recorded yet (no history started).
        """
        files = dict(self._resolve("HEAD").files) if self.revisions else None
        if files is None:
            raise LineageError("recording files", f"no history in {self.root} yet")
        for name in paths:
            if (self.root / name).is_file():
                files[name] = (self.root / name).read_bytes()
                self.recorded.add(name)
        if self.revisions[-1].files != files:
            self._commit(message, files)
        for tag in tags:
            self.tags[tag] = self.head()
        return self.head()

    def current_revision(self, shard_ids: Sequence[int]) -> DataRevision:
        """The head, with md5s of the shard files as they are."""
        shards = self.root / "data" / "shards"
        md5s = {
            path.name: hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
            for path in sorted(shards.glob("*.parquet"))
        }
        digest = hashlib.md5(usedforsecurity=False)
        for name, md5 in md5s.items():
            digest.update(f"{name}:{md5}\n".encode())
        return DataRevision(
            self.head(),
            f"memory:{digest.hexdigest()}",
            {s: md5s.get(f"shard-{s:03d}.parquet", "") for s in shard_ids},
        )

    def head(self) -> str:
        """The sha of the newest revision.

        Raises:
            LineageError: nothing recorded yet.
        """
        if not self.revisions:
            raise LineageError("reading HEAD", f"no revision recorded in {self.root} yet")
        return self.revisions[-1].sha

    def parent_commit(self, rev: str) -> str | None:
        """The revision before `rev` (None for the first).

        Raises:
            LineageError: `rev` is not a revision.
        """
        return self._resolve(rev).parent

    def read_git_file(self, rev: str, path: str) -> str:
        """A small versioned file's text at `rev`.

        Raises:
            LineageError: no such revision, or no such small file there.
        """
        files = self._resolve(rev).files
        if path not in files or not (_is_git_file(path) or path in self.recorded):
            raise LineageError(f"reading {path} at {rev[:12]}", "not a versioned small file")
        return files[path].decode("utf-8")

    def read_at_revision(self, path: str, rev: str) -> bytes:
        """Any versioned file's bytes at `rev`.

        Raises:
            LineageError: no such revision or file.
        """
        files = self._resolve(rev).files
        if path not in files:
            raise LineageError(f"reading {path} at {rev[:12]}", "no such file at that revision")
        return files[path]

    def is_clean(self) -> bool:
        """Whether the versioned files are as the head revision recorded them."""
        return bool(self.revisions) and self.revisions[-1].files == self._snapshot()

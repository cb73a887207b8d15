"""DVC and git lineage of a workspace: init, record a data revision, diff, read old data.

Each flow ends with :func:`record_revision`: `dvc commit` of every stage (so `dvc.lock`
states what the flow produced and `dvc status` is clean), a git commit of the small files,
and a git tag per request. One parquet file per shard makes the lineage exact: `dvc diff`
between two revisions names the shard files a deletion rewrote.

git runs as a subprocess (`git -C ROOT ...`); DVC through its Python API, imported inside
the functions. Their errors become :class:`LineageError`. :class:`DvcLineage` binds them to
one workspace as the :class:`~unlearn_ops.workflow.ports.DataLineage` port; the
:class:`~unlearn_ops.workflow.revisions.DataRevision` it returns belongs to the core.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from unlearn_ops.errors import LineageError
from unlearn_ops.workflow.revisions import VERSIONED_FILES, DataRevision

if TYPE_CHECKING:
    from unlearn_ops.workflow.ports import RevisionScope

__all__ = [
    "DvcLineage",
    "changed_paths",
    "current_revision",
    "git_head",
    "init_repository",
    "is_clean",
    "read_at_revision",
    "read_git_file",
    "record_revision",
    "stage_status",
]

_IDENTITY = {"user.name": "unlearn-ops", "user.email": "unlearn-ops@localhost"}


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        # git from PATH with our own arguments, as a user would run it.
        result = subprocess.run(  # noqa: S603
            ["git", "-C", str(root), *args],  # noqa: S607
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LineageError("git", "git is not installed") from exc
    if check and result.returncode != 0:
        raise LineageError(f"git {args[0]}", result.stderr or result.stdout)
    return result


_CWD_LOCK = threading.Lock()


@contextlib.contextmanager
def open_dvc_repo(root: Path) -> Iterator[Any]:
    """An open DVC repo, with the process inside it: DVC resolves paths against the cwd."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    logging.getLogger("dvc").setLevel(logging.WARNING)
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    # DVC prints progress to stdout ("Updating lock file"); our stdout belongs to the CLI.
    with _CWD_LOCK, contextlib.chdir(root), contextlib.redirect_stdout(io.StringIO()):
        try:
            repo = Repo(str(root))
        except DvcException as exc:
            raise LineageError("dvc open", str(exc)) from exc
        try:
            yield repo
        finally:
            repo.close()


def init_repository(root: Path) -> str:
    """Make `root` a git repository with DVC initialised, and commit its files.

    A repository whose top level is `root` is kept (DVC is added to it); inside another
    repository a nested one is made, so the enclosing tree is never touched. A commit
    identity is set for this repository only when git has none, so that flows can commit
    on fresh machines.

    Returns:
        The sha of the first commit.
    """
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    # `dvc init` logs "Initialized DVC repository" at INFO; the CLI says it in its own words.
    logging.getLogger("dvc").setLevel(logging.WARNING)

    toplevel = _git(root, "rev-parse", "--show-toplevel", check=False).stdout.strip()
    if not toplevel or Path(toplevel).resolve() != root.resolve():
        # A workspace is always its own repository, never a folder of an enclosing one.
        _git(root, "init", "-q", "-b", "main")
    for key, value in _IDENTITY.items():
        if not _git(root, "config", key, check=False).stdout.strip():
            _git(root, "config", key, value)
    if not (root / ".dvc").is_dir():
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                Repo.init(str(root)).close()
        except DvcException as exc:
            raise LineageError("dvc init", str(exc)) from exc
        _git(root, "config", "core.autocrlf", "false")
    _git(root, "add", "--all", ".")
    if _git(root, "diff", "--cached", "--quiet", check=False).returncode != 0:
        _git(root, "commit", "-q", "-m", "unlearn-ops: new workspace")
    return git_head(root)


def git_head(root: Path) -> str:
    """The sha of HEAD."""
    return _git(root, "rev-parse", "HEAD").stdout.strip()


def parent_commit(root: Path, rev: str) -> str | None:
    """The sha of `rev`'s first parent: the data before a revision (None for a root commit).

    Raises:
        LineageError: `rev` is not a commit of the workspace.
    """
    _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    result = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^1", check=False)
    return result.stdout.strip() or None


def _file_md5(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _lock_out_md5(root: Path, path: str) -> str:
    import yaml

    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8")) or {}
    for stage in lock.get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("path") == path:
                return str(out.get("md5", ""))
    return ""


def record_revision(
    root: Path,
    message: str,
    *,
    tags: Sequence[str] = (),
    shard_ids: Sequence[int] = (),
    stages: Sequence[str] = (),
) -> DataRevision:
    """Commit the workspace state to DVC and git; tag it.

    Args:
        root: the workspace.
        message: the git commit message.
        tags: git tags to point at the new commit (moved there if they exist: a rerun
            after a crash completes the same request).
        shard_ids: shards whose file md5 to report.
        stages: the only `dvc.yaml` stages whose outputs changed since the last revision
            (`dvc commit` of these alone: committing every stage hashes and relinks every
            shard and model file, about a second on digits; issue 15); empty: all.

    With a default DVC remote configured (an S3 bucket, say), the revision's data is
    pushed there too, so that the lineage outlives this machine.

    Returns:
        The new data revision.

    Raises:
        LineageError: DVC could not commit, or not push to the default remote (the local
            commit stands; running the flow again pushes it).
    """
    from dvc.exceptions import DvcException

    with open_dvc_repo(root) as repo:
        try:
            targets: list[str | None] = [*stages] or [None]
            for target in targets:
                repo.commit(target, force=True, allow_missing=True)
        except DvcException as exc:
            raise LineageError("dvc commit", str(exc)) from exc
        if repo.config.get("core", {}).get("remote"):
            try:
                repo.push()
            except (DvcException, OSError) as exc:
                raise LineageError("dvc push", str(exc)) from exc
    existing = [name for name in dict.fromkeys(VERSIONED_FILES) if (root / name).exists()]
    _git(root, "add", "--all", "--", *existing)
    if _git(root, "diff", "--cached", "--quiet", check=False).returncode != 0:
        _git(root, "commit", "-q", "-m", message)
    for tag in tags:
        _git(root, "tag", "-f", tag)
    shard_md5s = {
        shard_id: _file_md5(root / "data" / "shards" / f"shard-{shard_id:03d}.parquet")
        for shard_id in shard_ids
    }
    return DataRevision(git_head(root), _lock_out_md5(root, "data/shards"), shard_md5s, tuple(tags))


def record_files(root: Path, message: str, paths: Sequence[str], tags: Sequence[str] = ()) -> str:
    """Commit these small files to git (none if unchanged; no `dvc commit`), tag; the head.

    Raises:
        LineageError: the workspace has no git history, or git failed.
    """
    existing = [path for path in dict.fromkeys(paths) if (root / path).exists()]
    if existing:
        _git(root, "add", "--all", "--", *existing)
    if _git(root, "diff", "--cached", "--quiet", check=False).returncode != 0:
        _git(root, "commit", "-q", "-m", message)
    for tag in tags:
        _git(root, "tag", "-f", tag)
    return git_head(root)


def current_revision(root: Path, shard_ids: Sequence[int]) -> DataRevision:
    """The revision of the files as they are (HEAD, and md5s computed from the files).

    For registering outside a flow (`dvc repro`), where DVC holds the repository and
    nothing is committed yet. The folder's md5 is DVC's own (from dvc.lock) when the
    files are those that DVC recorded, so it compares with the flows' versions; otherwise
    an md5 over `name:md5` lines, marked with a `local:` prefix.
    """
    shards = root / "data" / "shards"
    files = {path.name: _file_md5(path) for path in sorted(shards.glob("*.parquet"))}
    folder_md5 = _lock_out_md5(root, "data/shards")
    if not folder_md5 or _dir_listing(root, folder_md5) != files:
        digest = hashlib.md5(usedforsecurity=False)
        for name, md5 in files.items():
            digest.update(f"{name}:{md5}\n".encode())
        folder_md5 = f"local:{digest.hexdigest()}"
    return DataRevision(
        git_head(root),
        folder_md5,
        {s: files.get(f"shard-{s:03d}.parquet", "") for s in shard_ids},
    )


def _dir_listing(root: Path, folder_md5: str) -> dict[str, str] | None:
    """File name -> md5 of a folder DVC cached under `folder_md5` (`....dir`), if cached."""
    import json

    value = folder_md5.removesuffix(".dir")
    path = root / ".dvc" / "cache" / "files" / "md5" / value[:2] / f"{value[2:]}.dir"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {str(entry["relpath"]): str(entry["md5"]) for entry in entries}


def read_git_file(root: Path, rev: str, path: str) -> str:
    """A git-tracked file's text at a revision."""
    return _git(root, "show", f"{rev}:{path}").stdout


def stage_status(root: Path) -> dict[str, Any]:
    """`dvc status` of the workspace: empty when every stage matches dvc.lock."""
    from dvc.exceptions import DvcException

    with open_dvc_repo(root) as repo:
        try:
            status: dict[str, Any] = repo.status()
        except DvcException as exc:
            raise LineageError("dvc status", str(exc)) from exc
    return status


def is_clean(root: Path) -> bool:
    """Whether `dvc status` is clean and git has nothing uncommitted in tracked files."""
    dirty_git = _git(root, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    return not stage_status(root) and not dirty_git


def changed_paths(root: Path, a_rev: str, b_rev: str | None = None) -> dict[str, list[str]]:
    """`dvc diff` between two revisions: added, deleted, modified paths of DVC outputs."""
    from dvc.exceptions import DvcException

    with open_dvc_repo(root) as repo:
        try:
            diff = repo.diff(a_rev, b_rev)
        except DvcException as exc:
            raise LineageError("dvc diff", str(exc)) from exc
    return {
        kind: sorted(str(entry["path"]) for entry in diff.get(kind, []))
        for kind in ("added", "deleted", "modified")
    }


def read_at_revision(root: Path, path: str, rev: str) -> bytes:
    """The bytes of a DVC-tracked file as of a git revision (from the cache or remote)."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        data: bytes = dvc.api.read(path, repo=str(root), rev=rev, mode="rb")
    except (DvcException, FileNotFoundError) as exc:
        raise LineageError(f"reading {path} at {rev[:12]}", str(exc) or repr(exc)) from exc
    return data


class DvcLineage:
    """The git + DVC lineage of one workspace (the :class:`DataLineage` port).

    Args:
        root: the workspace directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def init_repository(self) -> str:
        """See :func:`init_repository`."""
        return init_repository(self.root)

    def record_revision(self, message: str, **scope: Unpack[RevisionScope]) -> DataRevision:
        """See :func:`record_revision`."""
        return record_revision(self.root, message, **scope)

    def record_files(self, message: str, paths: Sequence[str], tags: Sequence[str] = ()) -> str:
        """See :func:`record_files`."""
        return record_files(self.root, message, paths, tags)

    def current_revision(self, shard_ids: Sequence[int]) -> DataRevision:
        """See :func:`current_revision`."""
        return current_revision(self.root, shard_ids)

    def head(self) -> str:
        """See :func:`git_head`."""
        return git_head(self.root)

    def parent_commit(self, rev: str) -> str | None:
        """See :func:`parent_commit`."""
        return parent_commit(self.root, rev)

    def read_git_file(self, rev: str, path: str) -> str:
        """See :func:`read_git_file`."""
        return read_git_file(self.root, rev, path)

    def read_at_revision(self, path: str, rev: str) -> bytes:
        """See :func:`read_at_revision`."""
        return read_at_revision(self.root, path, rev)

    def is_clean(self) -> bool:
        """See :func:`is_clean`."""
        return is_clean(self.root)

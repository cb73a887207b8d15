"""The DVC cache and remotes of a workspace: where objects live, and a rev-scoped `dvc gc`.

Purge (:mod:`unlearn_ops.compliance.purge`) collects the objects that no kept revision uses,
in the cache and the default remote; the scan (:mod:`unlearn_ops.compliance.scan`) reads the
cache and local remotes for forgotten records. DVC through its Python API, imported inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn_ops.adapters.dvc.lineage import open_dvc_repo
from unlearn_ops.errors import LineageError

__all__ = ["CacheCollection", "cache_dir", "collect_cache", "default_remote", "local_remote_dirs"]


@dataclass(frozen=True)
class CacheCollection:
    """What a rev-scoped `dvc gc` removed (or would remove, on a dry run).

    Attributes:
        cache_objects: md5s removed from the local cache.
        remote_objects: md5s removed from the default remote (empty without one).
        remote: the default remote's name, if one is configured.
    """

    cache_objects: tuple[str, ...] = ()
    remote_objects: tuple[str, ...] = ()
    remote: str | None = None


def default_remote(root: Path) -> str | None:
    """The name of the workspace's default DVC remote, or None."""
    with open_dvc_repo(root) as repo:
        name = repo.config.get("core", {}).get("remote")
    return str(name) if name else None


def local_remote_dirs(root: Path) -> list[Path]:
    """Folders of the DVC remotes that are local paths (what a scan can walk)."""
    with open_dvc_repo(root) as repo:
        remotes = dict(repo.config.get("remote", {}))
    found = []
    for config in remotes.values():
        url = str(config.get("url", ""))
        if "://" in url and not url.startswith("file://"):
            continue
        path = Path(url.removeprefix("file://"))
        found.append(path if path.is_absolute() else (root / ".dvc" / path).resolve())
    return found


def cache_dir(root: Path) -> Path:
    """The workspace's DVC cache folder (`.dvc/cache` unless configured elsewhere)."""
    with open_dvc_repo(root) as repo:
        local = repo.cache.local
    # `files/md5` under the cache root; the root also holds pre-3.0 (md5-dos2unix) objects.
    return Path(local.path).parent.parent if local is not None else root / ".dvc" / "cache"


def collect_cache(root: Path, keep_revs: Sequence[str], *, dry: bool = False) -> CacheCollection:
    """`dvc gc` scoped to the workspace plus `keep_revs`, on the cache and the default remote.

    `dvc gc --all-commits` would keep every old revision (and so every forgotten record)
    alive, and `dvc gc --workspace` alone would drop the data of older versions that are
    kept; DVC's CLI takes one `--rev` only. So this collects, exactly as `dvc gc -w -c
    --rev` does, the objects used by the workspace and by each revision in `keep_revs`
    (DVC's own `used_objs`) and removes every other object from the cache and, when a
    default remote is configured, from the remote.

    Args:
        root: the workspace.
        keep_revs: git revisions whose data must stay readable (kept versions).
        dry: only report what would be removed.
    """
    from dvc.exceptions import DvcException
    from dvc.repo.gc import _merge_remote_obj_ids
    from dvc_data.hashfile.gc import gc as collect_odb

    remote = default_remote(root)
    revs = sorted(set(keep_revs))
    with open_dvc_repo(root) as repo, repo.lock:
        try:
            used_by_odb: dict[Any, set[Any]] = {}
            for odb, objects in repo.used_objs(revs=revs or None, num=1, force=True).items():
                used_by_odb.setdefault(odb, set()).update(objects)
            used = {obj for objects in used_by_odb.values() for obj in objects}
            local = _collect(repo.cache.local, used, dry, collect_odb)
            remote_removed: tuple[str, ...] = ()
            if remote is not None:
                _merge_remote_obj_ids(repo, remote, used_by_odb)
                removed: list[str] = []
                for odb, objects in used_by_odb.items():
                    if odb is not None and odb.hash_name == "md5":
                        removed.extend(_collect(odb, objects, dry, collect_odb))
                remote_removed = tuple(sorted(set(removed)))
        except DvcException as exc:
            raise LineageError("dvc gc", str(exc)) from exc
    return CacheCollection(tuple(local), remote_removed, remote)


def _collect(odb: Any, used: set[Any], dry: bool, collect_odb: Any) -> list[str]:
    """Remove (unless `dry`) every object of `odb` that `used` does not name; their md5s."""
    used_values = {obj.value for obj in used if obj.name == odb.hash_name}
    unused = sorted(h for h in odb.all() if h not in used_values)
    if unused and not dry:
        collect_odb(odb, used)
    return unused

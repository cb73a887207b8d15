"""The record index: which data file (and slice) holds each record, by keyed hash.

One small file per data file, `ROOT/.unlearn-ops/record-index/shard-007.npz` and
`holdout.npz`: the sorted 64-bit keyed hashes of the file's record ids, the slice of each,
and the file's stamp (size and mtime in ns) when it was indexed. Planning a forget looks ids
up here and reads no shard file at all (issue 15, item 3); a forget that rewrites a shard
file rewrites that file's entry.

Each entry also keeps a BLAKE2b digest of the file's bytes: DVC's `commit` copies a file
into its cache and back (a new mtime for the same bytes), so an entry whose stamp no longer
matches but whose digest does is still right; it is used as it is (no write on a read path)
and re-stamped after each data revision (:meth:`RecordIndex.restamp`). An entry whose bytes
changed is rebuilt from that file alone on first use: a workspace made before the index
existed, a file restored by `dvc checkout` or a rollback, a crash between the data write and
the index write. The entries are a cache derived from the data files and never the truth: a
forget removes rows by exact id, so the index can only decide which files to open.

The key is BLAKE2b-64 under a key derived from `UNLEARN_OPS_ID_HASH_KEY` (so the index
tells nothing to whoever lacks the key). With a million records, the chance that an id
never in the data collides with one that is, per id looked up, is about 1e6 / 2**64
(5e-14); a changed key changes the fingerprint kept in each entry and rebuilds it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unlearn_ops.atomic import write_atomic
from unlearn_ops.errors import StoreError

__all__ = ["FileIndex", "RecordIndex", "index_keys"]

#: The slice of a record in a file that has no slices (the held-out table).
NO_SLICE = -1

_FINGERPRINT_TEXT = "\x1funlearn.record-index.fingerprint"


def _derived_key(secret: bytes) -> bytes:
    return hashlib.sha256(b"unlearn.record-index\x1f" + secret).digest()


def index_keys(canonical_ids: Iterable[str], secret: bytes) -> np.ndarray:
    """The index key (keyed BLAKE2b-64, uint64) of each canonical record id."""
    key = _derived_key(secret)
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(r.encode(), digest_size=8, key=key).digest(), "big")
            for r in canonical_ids
        ),
        dtype=np.uint64,
    )


@dataclass(frozen=True)
class FileIndex:
    """The records of one data file: sorted keys and the slice of each.

    Build with :meth:`from_keys` (which sorts); `keys` may repeat only on a 64-bit collision.
    """

    keys: np.ndarray
    slices: np.ndarray

    @classmethod
    def from_keys(cls, keys: np.ndarray, slices: np.ndarray | None = None) -> FileIndex:
        """An index of `keys` (any order) with their slices (:data:`NO_SLICE` when None)."""
        keys = np.asarray(keys, dtype=np.uint64)
        if slices is None:
            slices = np.full(len(keys), NO_SLICE, dtype=np.int32)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], np.asarray(slices, dtype=np.int32)[order])

    def __len__(self) -> int:
        return len(self.keys)

    def slices_of(self, keys: np.ndarray) -> np.ndarray:
        """The slice of each key's record, or -2 where the file does not hold it."""
        keys = np.asarray(keys, dtype=np.uint64)
        positions = np.searchsorted(self.keys, keys)
        clipped = np.minimum(positions, max(len(self.keys) - 1, 0))
        present = (
            (positions < len(self.keys)) & (self.keys[clipped] == keys)
            if len(self.keys)
            else np.zeros(len(keys), dtype=bool)
        )
        found = np.full(len(keys), -2, dtype=np.int32)
        if len(self.keys):
            found[present] = self.slices[clipped[present]]
        return found

    def slice_counts(self, num_slices: int) -> list[int]:
        """Records per slice, 0..num_slices-1."""
        counts: list[int] = np.bincount(self.slices, minlength=num_slices).tolist()
        return counts

    def without(self, keys: np.ndarray) -> FileIndex:
        """The index less one entry per key given (keys it lacks are ignored)."""
        keys = np.sort(np.asarray(keys, dtype=np.uint64))
        keep = np.ones(len(self.keys), dtype=bool)
        for key, count in zip(*np.unique(keys, return_counts=True), strict=True):
            start = int(np.searchsorted(self.keys, key, side="left"))
            stop = int(np.searchsorted(self.keys, key, side="right"))
            keep[start : min(stop, start + int(count))] = False
        return FileIndex(self.keys[keep], self.slices[keep])


def _digest(path: Path) -> bytes:
    """BLAKE2b-128 of a data file's bytes: the same data whatever its mtime."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).digest()


def _stamp(path: Path) -> np.ndarray:
    """What tells one write of a file from another without reading it: size and mtime (ns).

    Not the inode: a copy made with its times (`shutil.copytree`, a backup) is the same data
    and keeps its index.
    """
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise StoreError(path, "data file is missing", "run `unlearn-ops train` first") from exc
    return np.array([info.st_size, info.st_mtime_ns], dtype=np.int64)


class RecordIndex:
    """The index entries of an ensemble's data files, kept in one folder.

    Args:
        folder: where the entries live.
        secret: the key of the index hashes (the settings' id hash key).
        read_file: reads a data file's (canonical ids, slices or None) when an entry must
            be rebuilt; the only place the index opens a data file.
    """

    def __init__(
        self,
        folder: Path,
        secret: bytes,
        read_file: Callable[[Path], tuple[list[str], np.ndarray | None]],
    ) -> None:
        self.folder = folder
        self.secret = secret
        self._read_file = read_file
        self._fingerprint = int(index_keys([_FINGERPRINT_TEXT], secret)[0])
        self.rebuilt: list[str] = []

    def keys(self, canonical_ids: Iterable[str]) -> np.ndarray:
        """The index keys of canonical ids."""
        return index_keys(canonical_ids, self.secret)

    def _entry_path(self, data_path: Path) -> Path:
        return self.folder / f"{data_path.stem}.npz"

    def entry(self, data_path: Path) -> FileIndex:
        """The index of a data file, rebuilt from the file when its stamp has changed.

        Raises:
            StoreError: the data file is missing, or an entry cannot be read.
        """
        stamp = _stamp(data_path)
        path = self._entry_path(data_path)
        stored = self._load(path)
        if stored is not None:
            index, stored_stamp, digest = stored
            if np.array_equal(stored_stamp, stamp):
                return index
            if digest is not None and digest == _digest(data_path):
                return index  # same bytes, new mtime (DVC): restamp() records it later
        ids, slices = self._read_file(data_path)
        index = FileIndex.from_keys(self.keys(ids), slices)
        self.rebuilt.append(data_path.name)
        self._save(path, index, data_path)
        return index

    def restamp(self, data_paths: Iterable[Path]) -> None:
        """Record the current stamp of files whose bytes their entries still describe.

        Called after a data revision, whose `dvc commit` gives unchanged files new times; an
        entry of changed bytes (or none) is left for :meth:`entry` to rebuild.
        """
        for data_path in data_paths:
            path = self._entry_path(data_path)
            stored = self._load(path) if data_path.exists() else None
            if stored is None:
                continue
            index, stored_stamp, digest = stored
            if np.array_equal(stored_stamp, _stamp(data_path)):
                continue
            if digest is not None and digest == _digest(data_path):
                self._save(path, index, data_path, digest)

    def _load(self, path: Path) -> tuple[FileIndex, np.ndarray, bytes | None] | None:
        """An entry (index, stamp, digest or None for entries made before digests), if any.

        Raises:
            StoreError: the entry cannot be read.
        """
        try:
            with np.load(path) as stored:
                if int(stored["fingerprint"]) != self._fingerprint:
                    return None
                digest = bytes(stored["digest"]) if "digest" in stored.files else None
                return FileIndex(stored["keys"], stored["slices"]), stored["stamp"], digest
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(
                path, f"record index entry unreadable ({exc})", "delete it; it is rebuilt"
            ) from exc

    def store(self, data_path: Path, index: FileIndex) -> None:
        """Keep `index` as the entry of `data_path`, just written (stamped now)."""
        self._save(self._entry_path(data_path), index, data_path)

    def _save(
        self, path: Path, index: FileIndex, data_path: Path, digest: bytes | None = None
    ) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            keys=index.keys,
            slices=index.slices,
            stamp=_stamp(data_path),
            digest=np.frombuffer(digest or _digest(data_path), dtype=np.uint8),
            fingerprint=np.array(self._fingerprint, dtype=np.uint64),
        )
        write_atomic(path, buffer.getvalue())

"""Content-addressed slice checkpoints: keys, and the stores that hold them.

The key of stage j of a shard chains the key of stage j-1 with the content of slice j, so
it names exactly the records (and settings) that the checkpoint was trained on
(Bourtoule et al. 2021, section IV-C; the reference code names checkpoints by a hash of
record ids too). Forgetting a record of slice k changes the keys of stages k..R-1 only:
retraining resumes from the longest prefix of keys that a store still holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from unlearn_ops.atomic import write_atomic
from unlearn_ops.errors import CheckpointNotFoundError
from unlearn_ops.sisa.hashing import canonical_id, digest_text
from unlearn_ops.sisa.sharding import SLICE_COLUMN

__all__ = [
    "CheckpointStore",
    "KeyedFolder",
    "LocalCheckpointStore",
    "MemoryCheckpointStore",
    "initial_key",
    "key_path",
    "stage_keys",
]


def initial_key(training_hash: str, shard_id: int) -> str:
    """Key of a shard's untrained model: settings, seed and shard (the init is seeded by both)."""
    return digest_text("init", training_hash, str(shard_id))


def _slice_digest(rows: pd.DataFrame, id_column: str, label_column: str) -> str:
    """Digest of one slice's records: ids in canonical order, labels and feature bytes."""
    digest = hashlib.sha256()
    keys = rows[id_column].map(canonical_id).to_numpy(dtype=str)
    order = np.argsort(keys, kind="stable")
    digest.update("\x1f".join(keys[order]).encode())
    digest.update(rows[label_column].to_numpy(dtype=np.int64)[order].tobytes())
    features = rows.drop(columns=[id_column, label_column, SLICE_COLUMN])
    digest.update("\x1f".join(map(str, features.columns)).encode())
    digest.update(np.ascontiguousarray(features.to_numpy(dtype=np.float32)[order]).tobytes())
    return digest.hexdigest()


def stage_keys(
    shard: pd.DataFrame,
    *,
    shard_id: int,
    num_slices: int,
    training_hash: str,
    id_column: str,
    label_column: str,
) -> list[str]:
    """The checkpoint key after each of the R stages of a shard (stage j saw slices 0..j)."""
    keys: list[str] = []
    previous = initial_key(training_hash, shard_id)
    for stage in range(num_slices):
        rows = shard[shard[SLICE_COLUMN] == stage]
        previous = digest_text(
            "stage", previous, str(stage), _slice_digest(rows, id_column, label_column)
        )
        keys.append(previous)
    return keys


def key_path(root: Path, key: str, suffix: str) -> Path:
    """Where a checkpoint key's file lives under `root`: `ROOT/ab/abcdef...SUFFIX`.

    Raises:
        ValueError: `key` is not a checkpoint key (lowercase hex, at least 3 digits);
            checked because keys become paths.
    """
    if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
        raise ValueError(f"not a checkpoint key: {key!r}")
    return root / key[:2] / f"{key}{suffix}"


@runtime_checkable
class CheckpointStore(Protocol):
    """Where checkpoints live, as opaque bytes under their content key."""

    def contains(self, key: str) -> bool:
        """Whether `key` is held."""
        ...

    def load(self, key: str) -> bytes:
        """The bytes saved under `key`; raises CheckpointNotFoundError if absent."""
        ...

    def save(self, key: str, data: bytes) -> None:
        """Store `data` under `key` (idempotent: a key always names the same content)."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key` if held."""
        ...

    def keys(self) -> Iterator[str]:
        """Every key held."""
        ...


class KeyedFolder:
    """Files named by checkpoint key in one folder, `ROOT/ab/abcdef...SUFFIX`; no I/O here.

    Args:
        root: the folder.
    """

    suffix: ClassVar[str] = ""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return key_path(self.root, key, self.suffix)

    def contains(self, key: str) -> bool:
        """Whether `key` has a file."""
        return self._path(key).is_file()


class LocalCheckpointStore(KeyedFolder):
    """Checkpoints as files `ROOT/ab/abcdef....pt`, written atomically."""

    suffix = ".pt"

    def load(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise CheckpointNotFoundError(key, self) from exc

    def save(self, key: str, data: bytes) -> None:
        write_atomic(self._path(key), data)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        if self.root.is_dir():
            for path in sorted(self.root.glob("??/*.pt")):
                yield path.stem


class MemoryCheckpointStore:
    """Checkpoints in a dict: for from-scratch verification runs and for tests."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"MemoryCheckpointStore({len(self._data)} checkpoints)"

    def contains(self, key: str) -> bool:
        return key in self._data

    def load(self, key: str) -> bytes:
        try:
            return self._data[key]
        except KeyError as exc:
            raise CheckpointNotFoundError(key, self) from exc

    def save(self, key: str, data: bytes) -> None:
        self._data[key] = data

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def keys(self) -> Iterator[str]:
        yield from sorted(self._data)

"""Sharding and slicing: where each record lives, and the one-parquet-file-per-shard layout.

A record's shard is a salted hash of its id mod S and its slice a second salted hash mod R
(Bourtoule et al. 2021, section IV-B). Both depend on the id alone, so removing records
never moves any other record: only the shards that held forgotten records change.

A dataset too large to hold twice arrives in chunks: :class:`StagedTable` keeps each
chunk's rows of one file as a piece on disk, and the file is assembled from its pieces
alone, so preparing holds one chunk, then one shard, at a time (issue 15, item 4).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from unlearn_ops.atomic import write_atomic
from unlearn_ops.errors import StoreError
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.hashing import canonical_id, stable_hash64

__all__ = [
    "SLICE_COLUMN",
    "StagedTable",
    "assign_shards",
    "assign_slices",
    "read_shard",
    "shard_file_name",
    "shard_pieces",
    "sort_shard",
    "split_into_shards",
    "write_shard",
]

SLICE_COLUMN = "slice_id"


def assign_shards(record_ids: Iterable[object], num_shards: int, salt: str) -> np.ndarray:
    """Shard index of each id: a salted hash mod `num_shards` (int64)."""
    return (stable_hash64(record_ids, f"shard:{salt}") % np.uint64(num_shards)).astype(np.int64)


def assign_slices(record_ids: Iterable[object], num_slices: int, salt: str) -> np.ndarray:
    """Slice index of each id within its shard: an independent salted hash mod `num_slices`."""
    return (stable_hash64(record_ids, f"slice:{salt}") % np.uint64(num_slices)).astype(np.int64)


def shard_file_name(shard_id: int) -> str:
    """File name of a shard: `shard-007.parquet`."""
    return f"shard-{shard_id:03d}.parquet"


def sort_shard(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """A shard's rows in training order: by slice, then by canonical id (as text)."""
    return _sort_canonically(frame, id_column)


def _sort_canonically(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    keys = frame[id_column].map(canonical_id)
    order = np.lexsort((keys.to_numpy(dtype=str), frame[SLICE_COLUMN].to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def split_into_shards(
    dataset: Dataset, num_shards: int, num_slices: int, salt: str
) -> dict[int, pd.DataFrame]:
    """Every shard's table: the dataset's columns plus `slice_id`, sorted by (slice, id).

    Shards that receive no record are present and empty, so the layout always has S files.
    """
    frame = dataset.frame.copy()
    shards = assign_shards(frame[dataset.id_column], num_shards, salt)
    frame.insert(1, SLICE_COLUMN, assign_slices(frame[dataset.id_column], num_slices, salt))
    return {
        shard_id: _sort_canonically(frame[shards == shard_id], dataset.id_column)
        for shard_id in range(num_shards)
    }


def shard_pieces(
    dataset: Dataset, num_shards: int, num_slices: int, salt: str
) -> Iterator[tuple[int, pd.DataFrame]]:
    """The rows of each shard that `dataset` (a chunk, say) holds, with `slice_id`, unsorted.

    Shards without a row in `dataset` are left out.
    """
    frame = dataset.frame
    shards = assign_shards(frame[dataset.id_column], num_shards, salt)
    slices = assign_slices(frame[dataset.id_column], num_slices, salt)
    for shard_id in np.unique(shards).tolist():
        mask = shards == shard_id
        piece = frame[mask].reset_index(drop=True)
        piece.insert(1, SLICE_COLUMN, slices[mask])
        yield int(shard_id), piece


class StagedTable:
    """One table written piece by piece to a folder, then read back whole, in order.

    Args:
        folder: where the pieces go (created on the first piece).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rows = 0
        self._pieces = 0
        self._empty: pd.DataFrame | None = None

    def add(self, frame: pd.DataFrame) -> None:
        """Keep `frame`'s rows as the next piece."""
        if self._empty is None:
            self._empty = frame.iloc[:0].copy()  # a copy: a view would keep `frame` alive
        if len(frame) == 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(self.folder / f"piece-{self._pieces:06d}.parquet", index=False)
        self._pieces += 1
        self.rows += len(frame)

    def read(self, empty: pd.DataFrame) -> pd.DataFrame:
        """Every row added, in order; `empty` (its columns and dtypes) when none was."""
        if self._pieces == 0:
            return empty if self._empty is None else self._empty
        pieces = [
            pd.read_parquet(self.folder / f"piece-{i:06d}.parquet") for i in range(self._pieces)
        ]
        if len(pieces) == 1:
            return pieces[0]
        return pd.concat(pieces, ignore_index=True)


def write_shard(frame: pd.DataFrame, path: Path) -> None:
    """Write a shard table atomically (temp file, then rename) so a crash never half-writes."""
    write_atomic(path, lambda temp: frame.to_parquet(temp, index=False))


def read_shard(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a shard table (or some of its columns).

    Raises:
        StoreError: the file is missing or unreadable.
    """
    try:
        return pd.read_parquet(path, columns=columns)
    except FileNotFoundError as exc:
        raise StoreError(path, "shard file is missing", "run `unlearn-ops train` first") from exc
    except (OSError, ValueError) as exc:
        raise StoreError(path, f"shard file cannot be read ({exc})") from exc

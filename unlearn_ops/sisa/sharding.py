"""Sharding and slicing: where each record lives, and the one-parquet-file-per-shard layout.

A record's shard is a salted hash of its id mod S and its slice a second salted hash mod R
(Bourtoule et al. 2021, section IV-B). Both depend on the id alone, so removing records
never moves any other record: only the shards that held forgotten records change.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from unlearn_ops.atomic import write_atomic
from unlearn_ops.errors import StoreError
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.hashing import canonical_id, stable_hash64

__all__ = [
    "SLICE_COLUMN",
    "assign_shards",
    "assign_slices",
    "read_shard",
    "shard_file_name",
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

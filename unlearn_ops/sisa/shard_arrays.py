"""A shard's table as plain arrays: what training, its stage keys and its index need.

Issue 15, item 4 (memory bounded by a shard): a shard file is read column by column with
pyarrow straight into one preallocated float32 matrix, with its labels, slices and
canonical ids beside it, never through a pandas frame, so that training holds the shard's
values once. The stage keys computed here are bit for bit those of
:func:`unlearn_ops.sisa.checkpoints.stage_keys` on the same table (the exactness
certificates and every checkpoint name depend on it; tests/sisa/test_shard_arrays.py pins
it), and the feature bytes are hashed in blocks of rows instead of one sorted copy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unlearn_ops.errors import StoreError
from unlearn_ops.sisa.checkpoints import initial_key
from unlearn_ops.sisa.hashing import canonical_id, digest_text
from unlearn_ops.sisa.sharding import SLICE_COLUMN, read_shard

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ShardArrays", "canonical_ids", "read_shard_arrays", "release_arrow_memory"]

_BLOCK_ROWS = 8192
"""Rows converted or hashed at a time: a few hundred KiB of temporaries, whatever the shard."""


def canonical_ids(ids: np.ndarray) -> np.ndarray:
    """Canonical ids as a numpy text array as narrow as the longest id, built in blocks."""
    if len(ids) == 0:
        return np.array([], dtype=str)
    blocks = []
    for start in range(0, len(ids), _BLOCK_ROWS):
        chunk = ids[start : start + _BLOCK_ROWS]
        if chunk.dtype.kind in "iu":  # str(int) is canonical_id of an integer
            texts = list(map(str, chunk.tolist()))
        else:
            texts = [canonical_id(v) for v in chunk]
        blocks.append(np.array(texts, dtype=str))
    return np.concatenate(blocks)


@dataclass(frozen=True, eq=False)
class ShardArrays:
    """One shard's records as arrays, rows in the file's order.

    Attributes:
        record_ids: canonical ids (numpy text).
        slices: slice of each record (int64).
        labels: class of each record (int64).
        values: every column but the id, the label and the slice, in the file's column
            order, as float32 (rows x columns): the features, and any other column the
            table keeps (a sensitive attribute), since stage keys hash them all.
        value_columns: names of the columns of `values`.
    """

    record_ids: np.ndarray
    slices: np.ndarray
    labels: np.ndarray
    values: np.ndarray
    value_columns: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.slices)

    @classmethod
    def from_frame(cls, table: pd.DataFrame, id_column: str, label_column: str) -> ShardArrays:
        """The arrays of a shard table already in memory (same conversions as the file path)."""
        value_columns = tuple(
            str(c) for c in table.columns if c not in (id_column, label_column, SLICE_COLUMN)
        )
        return cls(
            record_ids=canonical_ids(table[id_column].to_numpy()),
            slices=table[SLICE_COLUMN].to_numpy(dtype=np.int64, copy=True),
            labels=table[label_column].to_numpy(dtype=np.int64, copy=True),
            values=table[list(value_columns)].to_numpy(dtype=np.float32, copy=True),
            value_columns=value_columns,
        )

    def features(self, feature_columns: tuple[str, ...]) -> np.ndarray:
        """The float32 matrix of `feature_columns`: `values` itself when they are all of it."""
        if feature_columns == self.value_columns:
            return self.values
        positions = [self.value_columns.index(c) for c in feature_columns]
        return np.ascontiguousarray(self.values[:, positions])

    def stage_rows(self, stage: int) -> np.ndarray:
        """Row positions of slices 0..stage in canonical id order: a stage's data order."""
        rows = np.flatnonzero(self.slices <= stage)
        return rows[np.argsort(self.record_ids[rows], kind="stable")]

    def slice_ids(self, stage: int) -> np.ndarray:
        """Canonical ids of slice `stage`'s records."""
        ids: np.ndarray = self.record_ids[self.slices == stage]
        return ids

    def _slice_digest(self, stage: int) -> str:
        # Byte for byte checkpoints._slice_digest: ids in canonical order, their labels, the
        # value columns' names, then the values' rows in that order (hashed block by block:
        # SHA-256 of the pieces in sequence is that of their concatenation).
        rows = np.flatnonzero(self.slices == stage)
        keys = self.record_ids[rows]
        order = np.argsort(keys, kind="stable")
        rows = rows[order]
        digest = hashlib.sha256()
        digest.update("\x1f".join(keys[order].tolist()).encode())
        digest.update(self.labels[rows].tobytes())
        digest.update("\x1f".join(self.value_columns).encode())
        for start in range(0, len(rows), _BLOCK_ROWS):
            digest.update(self.values[rows[start : start + _BLOCK_ROWS]].tobytes())
        return digest.hexdigest()

    def stage_keys(self, *, shard_id: int, num_slices: int, training_hash: str) -> list[str]:
        """The key after each stage: :func:`~unlearn_ops.sisa.checkpoints.stage_keys`'s."""
        keys: list[str] = []
        previous = initial_key(training_hash, shard_id)
        for stage in range(num_slices):
            previous = digest_text("stage", previous, str(stage), self._slice_digest(stage))
            keys.append(previous)
        return keys


def release_arrow_memory() -> None:
    """Hand arrow's freed memory back to the system after a file is read or written.

    Arrow's default pool (mimalloc) keeps what it freed: without this, each shard file a
    forget reads and rewrites leaves a few MiB resident, and they add up across files.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def _plain_numeric(field_type: object) -> bool:
    import pyarrow.types as pat

    return bool(
        pat.is_integer(field_type) or pat.is_floating(field_type) or pat.is_boolean(field_type)
    )


def read_shard_arrays(path: Path, id_column: str, label_column: str) -> ShardArrays:
    """Read a shard file column by column into :class:`ShardArrays`.

    Each value column is decoded alone (a few hundred KiB of arrow memory at a time) and
    cast into its column of one preallocated float32 matrix, as pandas' `to_numpy` casts
    it. A file with a column that is not plain numbers without nulls (the id column
    aside, which may be text) is read through pandas instead: same arrays, more memory.

    Raises:
        StoreError: the file is missing or unreadable.
    """
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        names = list(schema.names)
        value_columns = tuple(n for n in names if n not in (id_column, label_column, SLICE_COLUMN))
        numeric = all(_plain_numeric(f.type) for f in schema if f.name != id_column)
        if (
            not numeric
            or any(n.startswith("__index_level_") for n in names)
            or not {id_column, label_column, SLICE_COLUMN} <= set(names)
        ):
            return ShardArrays.from_frame(read_shard(path), id_column, label_column)

        def column(name: str) -> np.ndarray | None:
            chunked = parquet.read(columns=[name], use_pandas_metadata=False).column(0)
            return None if chunked.null_count else chunked.to_numpy()

        values = np.empty((parquet.metadata.num_rows, len(value_columns)), dtype=np.float32)
        for position, name in enumerate(value_columns):
            data = column(name)
            if data is None:  # nulls: pandas decides what they become
                return ShardArrays.from_frame(read_shard(path), id_column, label_column)
            values[:, position] = data  # the cast pandas' to_numpy(dtype=float32) does
        ids, slices, labels = (column(n) for n in (id_column, SLICE_COLUMN, label_column))
    except FileNotFoundError as exc:
        raise StoreError(path, "shard file is missing", "run `unlearn-ops train` first") from exc
    except (OSError, ValueError) as exc:
        raise StoreError(path, f"shard file cannot be read ({exc})") from exc
    finally:
        release_arrow_memory()
    if ids is None or slices is None or labels is None:
        return ShardArrays.from_frame(read_shard(path), id_column, label_column)
    return ShardArrays(
        record_ids=canonical_ids(ids),
        slices=slices.astype(np.int64),
        labels=labels.astype(np.int64),
        values=values,
        value_columns=value_columns,
    )

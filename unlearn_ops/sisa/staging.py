"""Staging a dataset that arrives in chunks: its shard and held-out rows as pieces on disk.

Each chunk is split at once (holdout by a salted hash, then shard and slice, as
:mod:`~unlearn_ops.sisa.sharding` says) and its rows go to per-file pieces under a staging
folder, with their record-index keys; memory holds one chunk. `SisaEnsemble.prepare` then
assembles each file from its pieces alone, one shard at a time (issue 15, item 4).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from unlearn_ops.errors import DatasetError, StoreError
from unlearn_ops.sisa.datasets import Dataset, split_holdout
from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.sisa.record_index import FileIndex
from unlearn_ops.sisa.sharding import SLICE_COLUMN, StagedTable, shard_file_name, shard_pieces

__all__ = ["StagedSplit", "stage_split"]


@dataclass
class StagedSplit:
    """A dataset split into staged files, not yet assembled.

    Attributes:
        first: the first chunk without its rows (its columns and source stand for the
            dataset's).
        num_classes: the largest class count of any chunk.
        shards: each shard's staged rows (with `slice_id`, unsorted).
        holdout: the held-out rows, in the dataset's order.
        empty_shard: the columns and dtypes of a shard table with no row.
    """

    first: Dataset
    num_classes: int
    shards: dict[int, StagedTable]
    holdout: StagedTable
    empty_shard: pd.DataFrame
    _shard_keys: dict[int, list[tuple[np.ndarray, np.ndarray]]] = field(repr=False)
    _holdout_keys: list[np.ndarray] = field(repr=False)

    def shard_index(self, shard_id: int) -> FileIndex:
        """The record index of a shard's rows."""
        pairs = self._shard_keys[shard_id]
        return FileIndex.from_keys(
            np.concatenate([k for k, _ in pairs] or [np.zeros(0, np.uint64)]),
            np.concatenate([s for _, s in pairs] or [np.zeros(0, np.int64)]),
        )

    def holdout_index(self) -> FileIndex:
        """The record index of the held-out rows."""
        return FileIndex.from_keys(np.concatenate(self._holdout_keys))

    def check(self, index_keys: Callable[[Iterable[str]], np.ndarray]) -> None:
        """Refuse a split with no training or no held-out record, or a duplicated id.

        Each chunk checked its own ids; across chunks, equal index keys are confirmed on
        the ids themselves, read back from the pieces, so that a 64-bit collision of two
        distinct ids is no error.

        Raises:
            StoreError: no training or no held-out record.
            DatasetError: an id is in two chunks.
        """
        train_rows = sum(staged.rows for staged in self.shards.values())
        if train_rows == 0 or self.holdout.rows == 0:
            raise StoreError(
                self.first.source,
                f"holdout split left {train_rows} training and {self.holdout.rows} held-out "
                "records",
                "use a larger dataset or another dataset.holdout_fraction",
            )
        keys = [k for pairs in self._shard_keys.values() for k, _ in pairs] + self._holdout_keys
        every = np.sort(np.concatenate(keys))
        repeated = np.unique(every[1:][every[1:] == every[:-1]])
        if not len(repeated):
            return
        seen: Counter[str] = Counter()
        id_column = self.first.id_column
        for staged in [*self.shards.values(), self.holdout]:
            ids = staged.read(self.first.frame.iloc[:0])[id_column].map(canonical_id)
            seen.update(ids[np.isin(index_keys(ids), repeated)].tolist())
        duplicated = [record_id for record_id, count in seen.items() if count > 1]
        if duplicated:
            raise DatasetError(
                self.first.source,
                f"{len(duplicated)} duplicated id(s) in {id_column!r}: {', '.join(duplicated[:5])}",
                "every record needs its own id",
            )


def stage_split(
    chunks: Iterable[Dataset],
    folder: Path,
    *,
    num_shards: int,
    num_slices: int,
    salt: str,
    holdout_fraction: float,
    holdout_salt: str,
    keep: Callable[[Dataset], np.ndarray] | None,
    index_keys: Callable[[Iterable[str]], np.ndarray],
) -> StagedSplit:
    """Split each chunk into holdout and shard pieces under `folder`.

    Args:
        chunks: the dataset, chunk by chunk (one chunk for a dataset in memory).
        folder: where the pieces go.
        num_shards: S.
        num_slices: R.
        salt: the sharding salt.
        holdout_fraction: the share of records held out.
        holdout_salt: the salt of the holdout split.
        keep: which rows of a chunk to keep (forgotten records are left out); all when None.
        index_keys: the record-index key of canonical ids.

    Raises:
        StoreError: no chunk came.
    """
    shards = {s: StagedTable(folder / shard_file_name(s)) for s in range(num_shards)}
    holdout_table = StagedTable(folder / "holdout")
    shard_keys: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {s: [] for s in shards}
    holdout_keys: list[np.ndarray] = []
    first: Dataset | None = None
    empty_shard: pd.DataFrame | None = None
    num_classes = 0
    for chunk in chunks:
        if first is None:  # its columns, not its rows: the chunk itself is let go
            first = dataclasses.replace(chunk, frame=chunk.frame.iloc[:0].copy())
        num_classes = max(num_classes, chunk.num_classes)
        if keep is not None:
            chunk = chunk.subset(keep(chunk))
        train, holdout = split_holdout(chunk, holdout_fraction, holdout_salt)
        if empty_shard is None:
            empty_shard = train.frame.iloc[:0].copy()
            empty_shard.insert(1, SLICE_COLUMN, np.zeros(0, dtype=np.int64))
        for shard_id, piece in shard_pieces(train, num_shards, num_slices, salt):
            shards[shard_id].add(piece)
            keys = index_keys(piece[chunk.id_column].map(canonical_id))
            shard_keys[shard_id].append((keys, piece[SLICE_COLUMN].to_numpy()))
        holdout_table.add(holdout.frame)
        holdout_keys.append(index_keys(holdout.record_ids.map(canonical_id)))
    if first is None or empty_shard is None:
        raise StoreError(folder, "the dataset came as no chunk at all")
    return StagedSplit(
        first, num_classes, shards, holdout_table, empty_shard, shard_keys, holdout_keys
    )

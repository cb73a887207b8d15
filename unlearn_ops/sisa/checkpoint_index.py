"""The record index of stage checkpoints: which records (as keyed hashes) each one saw.

A checkpoint key chains slice digests (:mod:`unlearn_ops.sisa.checkpoints`), so the records a
checkpoint was trained on cannot be read back from its key. The ensemble therefore writes,
for every stage key it trains, a small entry beside the store::

    ROOT/checkpoints/index/ab/abc....json
        {"key", "shard_id", "stage", "parent", "record_hashes", "bytes_md5"}

`record_hashes` are the keyed hashes (settings.hash_record_id) of slice `stage`'s records
only; the records of a key are the union along its `parent` chain (stage 0's parent is
the shard's initial key, which has no entry). `bytes_md5` is the MD5 of the checkpoint's
bytes: the last stage's checkpoint is byte for byte the served `models/shard-NNN.pt`, so
a weights file found anywhere (DVC cache, MLflow artifacts) is judged by its MD5.

Entries hold keyed hashes only, as the ledger does, and stay after a purge deletes their
checkpoint, so that a stray copy of purged weights can still be recognised.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from unlearn_ops.atomic import write_atomic
from unlearn_ops.canonical import JsonReady
from unlearn_ops.errors import StoreError
from unlearn_ops.sisa.checkpoints import CheckpointStore, KeyedFolder
from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.sisa.shard_arrays import ShardArrays
from unlearn_ops.sisa.sharding import SLICE_COLUMN

__all__ = ["CheckpointIndex", "IndexEntry", "index_shard_checkpoints"]

_BLOCK = 8192
"""Ids hashed, and hashes written, at a time."""


@dataclass(frozen=True)
class IndexEntry(JsonReady):
    """What one stage checkpoint was trained on."""

    key: str
    shard_id: int
    stage: int
    parent: str | None
    record_hashes: tuple[str, ...]
    bytes_md5: str


class CheckpointIndex(KeyedFolder):
    """The index folder of a checkpoint store. Construction does no I/O.

    Args:
        root: the index folder (`ROOT/checkpoints/index` of an ensemble).
    """

    suffix = ".json"

    def write(self, entry: IndexEntry, record_hashes: np.ndarray | None = None) -> None:
        """Write an entry atomically (a key always names the same records).

        Args:
            entry: the entry.
            record_hashes: when given, the entry's hashes as sorted ASCII bytes (`S64`), in
                place of `entry.record_hashes`: written block by block, so that a slice of
                a large shard is never held as Python strings and one JSON text at once.
                The file's bytes are those of the entry with these hashes.
        """
        if record_hashes is None:
            write_atomic(self._path(entry.key), json.dumps(entry.to_dict(), sort_keys=True))
        else:
            hashes = record_hashes
            head = json.dumps({**entry.to_dict(), "record_hashes": ["@"]}, sort_keys=True)
            before, after = head.split('["@"]')

            def write(temp: Path) -> None:
                with temp.open("w", encoding="utf-8") as file:
                    file.write(before + "[")
                    for start in range(0, len(hashes), _BLOCK):
                        block = hashes[start : start + _BLOCK].tolist()
                        text = ", ".join(f'"{h.decode()}"' for h in block)
                        file.write((", " if start else "") + text)
                    file.write("]" + after)

            write_atomic(self._path(entry.key), write)
        self.__dict__.pop("_entries", None)

    def entry(self, key: str) -> IndexEntry | None:
        """The entry of `key`, or None."""
        return self._entries.get(key)

    def keys(self) -> Iterator[str]:
        """Every indexed key."""
        yield from sorted(self._entries)

    @cached_property
    def _entries(self) -> dict[str, IndexEntry]:
        entries: dict[str, IndexEntry] = {}
        if not self.root.is_dir():
            return entries
        for path in sorted(self.root.glob("??/*.json")):
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                entry = IndexEntry(
                    key=str(raw["key"]),
                    shard_id=int(raw["shard_id"]),
                    stage=int(raw["stage"]),
                    parent=None if raw["parent"] is None else str(raw["parent"]),
                    record_hashes=tuple(str(h) for h in raw["record_hashes"]),
                    bytes_md5=str(raw["bytes_md5"]),
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StoreError(path, f"not a checkpoint index entry ({exc})") from exc
            entries[entry.key] = entry
        return entries

    def records(self, key: str) -> set[str] | None:
        """Keyed hashes of every record the checkpoint `key` saw; None if not indexed."""
        entry = self.entry(key)
        if entry is None:
            return None
        found: set[str] = set()
        while entry is not None:
            found.update(entry.record_hashes)
            entry = self.entry(entry.parent) if entry.parent else None
        return found

    def keys_by_md5(self) -> dict[str, str]:
        """MD5 of a checkpoint's bytes -> its key (to judge weights files found elsewhere)."""
        return {entry.bytes_md5: key for key, entry in self._entries.items()}


def _slice_hashes(record_ids: np.ndarray, hash_record_id: Callable[[str], str]) -> np.ndarray:
    """Sorted distinct keyed hashes of canonical ids (hex as ASCII bytes), block by block."""
    hashes = np.empty(len(record_ids), dtype="S64")
    for start in range(0, len(record_ids), _BLOCK):
        block = record_ids[start : start + _BLOCK].tolist()
        hashes[start : start + len(block)] = [hash_record_id(r).encode() for r in block]
    unique: np.ndarray = np.unique(hashes)  # sorted as the text would be: ASCII hex
    return unique


def index_shard_checkpoints(
    index: CheckpointIndex,
    store: CheckpointStore,
    table: pd.DataFrame | ShardArrays,
    *,
    shard_id: int,
    stage_keys: Sequence[str],
    hash_record_id: Callable[[str], str],
    id_column: str | None = None,
) -> int:
    """Index the stage checkpoints of one trained shard (keys already indexed are skipped).

    Args:
        index: where entries go.
        store: the store holding the checkpoints (read once per new key, for its MD5).
        table: the shard's table the checkpoints were trained on (a frame, or its arrays).
        shard_id: the shard.
        stage_keys: the key after each stage (as :func:`~unlearn_ops.sisa.checkpoints.stage_keys`).
        hash_record_id: the keyed hash of a canonical id.
        id_column: the record-id column (for a frame).

    Returns:
        How many entries were written.
    """
    written = 0
    for stage, key in enumerate(stage_keys):
        if index.contains(key) or not store.contains(key):
            continue
        if isinstance(table, ShardArrays):
            ids = table.slice_ids(stage)
        else:
            if id_column is None:
                raise TypeError("id_column is needed to index from a frame")
            rows = table.loc[table[SLICE_COLUMN] == stage, id_column]
            ids = np.array([canonical_id(r) for r in rows], dtype=object)
        hashes = _slice_hashes(ids, hash_record_id)
        data = store.load(key)
        entry = IndexEntry(
            key=key,
            shard_id=shard_id,
            stage=stage,
            parent=stage_keys[stage - 1] if stage > 0 else None,
            record_hashes=(),
            bytes_md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        )
        del data
        index.write(entry, hashes)
        written += 1
    return written

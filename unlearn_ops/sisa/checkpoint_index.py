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
from typing import Any

import pandas as pd

from unlearn_ops.atomic import write_atomic
from unlearn_ops.canonical import json_ready
from unlearn_ops.errors import StoreError
from unlearn_ops.sisa.checkpoints import CheckpointStore, KeyedFolder
from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.sisa.sharding import SLICE_COLUMN

__all__ = ["CheckpointIndex", "IndexEntry", "index_shard_checkpoints"]


@dataclass(frozen=True)
class IndexEntry:
    """What one stage checkpoint was trained on."""

    key: str
    shard_id: int
    stage: int
    parent: str | None
    record_hashes: tuple[str, ...]
    bytes_md5: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the entry's file)."""
        return json_ready(self)


class CheckpointIndex(KeyedFolder):
    """The index folder of a checkpoint store. Construction does no I/O.

    Args:
        root: the index folder (`ROOT/checkpoints/index` of an ensemble).
    """

    suffix = ".json"

    def write(self, entry: IndexEntry) -> None:
        """Write an entry atomically (a key always names the same records)."""
        write_atomic(self._path(entry.key), json.dumps(entry.to_dict(), sort_keys=True))
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


def index_shard_checkpoints(
    index: CheckpointIndex,
    store: CheckpointStore,
    table: pd.DataFrame,
    *,
    shard_id: int,
    id_column: str,
    stage_keys: Sequence[str],
    hash_record_id: Callable[[str], str],
) -> int:
    """Index the stage checkpoints of one trained shard (keys already indexed are skipped).

    Args:
        index: where entries go.
        store: the store holding the checkpoints (read once per new key, for its MD5).
        table: the shard's table the checkpoints were trained on.
        shard_id: the shard.
        id_column: the record-id column.
        stage_keys: the key after each stage (as :func:`~unlearn_ops.sisa.checkpoints.stage_keys`).
        hash_record_id: the keyed hash of a canonical id.

    Returns:
        How many entries were written.
    """
    written = 0
    for stage, key in enumerate(stage_keys):
        if index.contains(key) or not store.contains(key):
            continue
        rows = table.loc[table[SLICE_COLUMN] == stage, id_column]
        hashes = sorted({hash_record_id(canonical_id(r)) for r in rows})
        data = store.load(key)
        index.write(
            IndexEntry(
                key=key,
                shard_id=shard_id,
                stage=stage,
                parent=stage_keys[stage - 1] if stage > 0 else None,
                record_hashes=tuple(hashes),
                bytes_md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            )
        )
        written += 1
    return written

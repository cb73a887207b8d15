"""Content keys of stage checkpoints, and the contract of every CheckpointStore."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearn_ops.errors import CheckpointNotFoundError
from unlearn_ops.sisa.checkpoints import (
    CheckpointStore,
    LocalCheckpointStore,
    MemoryCheckpointStore,
    initial_key,
    stage_keys,
)
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.hashing import digest_text
from unlearn_ops.sisa.sharding import SLICE_COLUMN, split_into_shards

NUM_SLICES = 4


def shard_table(num_records: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "record_id": np.arange(num_records),
            "label": rng.integers(0, 3, num_records),
            "a": rng.normal(size=num_records),
            "b": rng.normal(size=num_records),
        }
    )
    return split_into_shards(Dataset.from_frame(frame), 1, NUM_SLICES, "s")[0]


def keys_of(table: pd.DataFrame, training_hash: str = "h", shard_id: int = 0) -> list[str]:
    return stage_keys(
        table,
        shard_id=shard_id,
        num_slices=NUM_SLICES,
        training_hash=training_hash,
        id_column="record_id",
        label_column="label",
    )


# ------------------------------------------------------------------------------- keys
def test_initial_key_names_settings_and_shard() -> None:
    keys = {initial_key("h", 0), initial_key("h", 1), initial_key("g", 0)}
    assert len(keys) == 3
    assert initial_key("h", 0) == digest_text("init", "h", "0")


def test_one_key_per_stage_chained_from_the_initial_key() -> None:
    keys = keys_of(shard_table())
    assert len(keys) == NUM_SLICES
    assert len(set(keys)) == NUM_SLICES
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in keys)
    assert keys != keys_of(shard_table(), training_hash="other")
    assert keys != keys_of(shard_table(), shard_id=1)


def test_keys_ignore_row_order_and_id_type() -> None:
    table = shard_table()
    shuffled = table.sample(frac=1.0, random_state=5).reset_index(drop=True)
    assert keys_of(shuffled) == keys_of(table)
    assert keys_of(table.assign(record_id=table["record_id"].astype(str))) == keys_of(table)


@pytest.mark.parametrize("slice_id", range(NUM_SLICES))
def test_deleting_a_record_of_slice_k_changes_keys_k_onwards(slice_id: int) -> None:
    table = shard_table()
    before = keys_of(table)
    victim = table.index[table[SLICE_COLUMN] == slice_id][0]
    after = keys_of(table.drop(index=victim))
    assert after[:slice_id] == before[:slice_id]
    assert all(a != b for a, b in zip(after[slice_id:], before[slice_id:], strict=True))


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.assign(label=np.where(t.index == 5, (t["label"] + 1) % 3, t["label"])),
        lambda t: t.assign(a=np.where(t.index == 5, t["a"] + 1e-3, t["a"])),
        lambda t: t.assign(record_id=np.where(t.index == 5, 999, t["record_id"])),
    ],
    ids=["label", "feature", "id"],
)
def test_keys_cover_labels_features_and_ids(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    table = shard_table()
    slice_id = int(table.loc[5, SLICE_COLUMN])
    before = keys_of(table)
    after = keys_of(edit(table))
    assert after[:slice_id] == before[:slice_id]
    assert all(a != b for a, b in zip(after[slice_id:], before[slice_id:], strict=True))


def test_keys_cover_feature_names() -> None:
    table = shard_table()
    before = keys_of(table)
    after = keys_of(table.rename(columns={"b": "c"}))
    assert all(a != b for a, b in zip(after, before, strict=True))


def test_empty_slices_still_have_keys() -> None:
    table = shard_table().iloc[:0]
    keys = keys_of(table)
    assert len(set(keys)) == NUM_SLICES


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(0, 79), min_size=1, max_size=10))
def test_only_stages_from_the_first_deleted_slice_change(deleted: set[int]) -> None:
    table = shard_table()
    gone = table["record_id"].isin(deleted)
    first = int(table.loc[gone, SLICE_COLUMN].min())
    before = keys_of(table)
    after = keys_of(table[~gone])
    assert after[:first] == before[:first]
    assert all(a != b for a, b in zip(after[first:], before[first:], strict=True))


# ------------------------------------------------------------------------- the stores
StoreFactory = Callable[[Path], CheckpointStore]


@pytest.fixture(
    params=[
        pytest.param(lambda root: LocalCheckpointStore(root / "checkpoints"), id="local"),
        pytest.param(lambda root: MemoryCheckpointStore(), id="memory"),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> CheckpointStore:
    factory: StoreFactory = request.param
    return factory(tmp_path)


KEY_A = digest_text("a")
KEY_B = digest_text("b")


class TestCheckpointStoreContract:
    """What every CheckpointStore implementation promises."""

    def test_is_a_checkpoint_store(self, store: CheckpointStore) -> None:
        assert isinstance(store, CheckpointStore)

    def test_starts_empty(self, store: CheckpointStore) -> None:
        assert list(store.keys()) == []
        assert not store.contains(KEY_A)

    def test_saves_and_loads_bytes(self, store: CheckpointStore) -> None:
        store.save(KEY_A, b"\x00weights\xff")
        assert store.contains(KEY_A)
        assert store.load(KEY_A) == b"\x00weights\xff"
        assert not store.contains(KEY_B)

    def test_lists_keys_sorted(self, store: CheckpointStore) -> None:
        store.save(KEY_B, b"b")
        store.save(KEY_A, b"a")
        assert list(store.keys()) == sorted([KEY_A, KEY_B])

    def test_saving_again_replaces(self, store: CheckpointStore) -> None:
        store.save(KEY_A, b"first")
        store.save(KEY_A, b"second")
        assert store.load(KEY_A) == b"second"
        assert list(store.keys()) == [KEY_A]

    def test_load_of_a_missing_key_raises(self, store: CheckpointStore) -> None:
        with pytest.raises(CheckpointNotFoundError, match=KEY_A) as caught:
            store.load(KEY_A)
        assert isinstance(caught.value, KeyError)

    def test_delete(self, store: CheckpointStore) -> None:
        store.save(KEY_A, b"a")
        store.save(KEY_B, b"b")
        store.delete(KEY_A)
        store.delete(KEY_A)  # deleting what is not held is fine
        assert not store.contains(KEY_A)
        assert list(store.keys()) == [KEY_B]


def test_local_store_layout_and_persistence(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    LocalCheckpointStore(root).save(KEY_A, b"data")
    assert (root / KEY_A[:2] / f"{KEY_A}.pt").read_bytes() == b"data"
    assert [p.name for p in (root / KEY_A[:2]).iterdir()] == [f"{KEY_A}.pt"]
    reopened = LocalCheckpointStore(root)
    assert reopened.load(KEY_A) == b"data"
    assert list(reopened.keys()) == [KEY_A]


@pytest.mark.parametrize("key", ["", "ab", "../../etc/passwd", "ABCDEF", "xyz123"])
def test_local_store_rejects_what_is_not_a_key(tmp_path: Path, key: str) -> None:
    store = LocalCheckpointStore(tmp_path)
    with pytest.raises(ValueError, match="not a checkpoint key"):
        store.save(key, b"x")
    with pytest.raises(ValueError, match="not a checkpoint key"):
        store.contains(key)

"""Shard and slice assignment by id alone, and the one-parquet-per-shard files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearn_ops.errors import StoreError
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.sisa.sharding import (
    SLICE_COLUMN,
    assign_shards,
    assign_slices,
    read_shard,
    shard_file_name,
    split_into_shards,
    write_shard,
)

unique_ids = st.lists(
    st.one_of(st.integers(0, 10**9), st.text(min_size=1, max_size=10)),
    min_size=1,
    max_size=80,
    unique_by=canonical_id,
)


def dataset_of(record_ids: list[object]) -> Dataset:
    count = len(record_ids)
    frame = pd.DataFrame(
        {
            "record_id": [canonical_id(r) for r in record_ids],
            "label": [i % 3 for i in range(count)],
            "x": np.arange(count, dtype=np.float64),
        }
    )
    return Dataset.from_frame(frame)


def placement(tables: dict[int, pd.DataFrame]) -> dict[str, tuple[int, int]]:
    """(shard, slice) of every record id in a layout."""
    return {
        canonical_id(row.record_id): (shard_id, int(row.slice_id))
        for shard_id, table in tables.items()
        for row in table.itertuples()
    }


# ------------------------------------------------------------------------- assignment
def test_assignments_are_in_range_and_typed() -> None:
    ids = list(range(2000))
    shards = assign_shards(ids, 7, "s")
    slices = assign_slices(ids, 5, "s")
    assert shards.dtype == np.int64
    assert slices.dtype == np.int64
    assert set(shards.tolist()) == set(range(7))
    assert set(slices.tolist()) == set(range(5))


def test_assignments_are_roughly_uniform() -> None:
    counts = np.bincount(assign_shards(range(8000), 8, "s"), minlength=8)
    # 1000 expected per shard; a binomial std is about 30, so 850..1150 is very safe.
    assert counts.min() > 850
    assert counts.max() < 1150


def test_shard_and_slice_are_independent_hashes() -> None:
    ids = range(6000)
    shards = assign_shards(ids, 3, "s")
    slices = assign_slices(ids, 3, "s")
    assert not np.array_equal(shards, slices)
    table = np.zeros((3, 3), dtype=np.int64)
    np.add.at(table, (shards, slices), 1)
    assert table.min() > 500  # every (shard, slice) pair is filled, about 667 each


def test_assignment_depends_on_the_salt_and_not_on_the_id_type() -> None:
    ids = list(range(500))
    base = assign_shards(ids, 4, "a")
    np.testing.assert_array_equal(base, assign_shards([str(i) for i in ids], 4, "a"))
    np.testing.assert_array_equal(base, assign_shards([float(i) for i in ids], 4, "a"))
    assert not np.array_equal(base, assign_shards(ids, 4, "b"))


def test_one_shard_puts_everything_in_shard_zero() -> None:
    assert assign_shards(range(50), 1, "s").tolist() == [0] * 50


@settings(max_examples=60, deadline=None)
@given(unique_ids, st.data(), st.integers(1, 9), st.integers(1, 6))
def test_assignment_is_stable_under_deletion(
    ids: list[object], data: st.DataObject, num_shards: int, num_slices: int
) -> None:
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids))))
    remaining = [r for r, kept in zip(ids, keep, strict=True) if kept]
    np.testing.assert_array_equal(
        assign_shards(remaining, num_shards, "salt"), assign_shards(ids, num_shards, "salt")[keep]
    )
    np.testing.assert_array_equal(
        assign_slices(remaining, num_slices, "salt"), assign_slices(ids, num_slices, "salt")[keep]
    )


# ---------------------------------------------------------------------------- layout
def test_shard_file_name() -> None:
    assert shard_file_name(7) == "shard-007.parquet"
    assert shard_file_name(123) == "shard-123.parquet"


def test_split_into_shards_partitions_and_sorts() -> None:
    dataset = dataset_of(list(range(200)))
    tables = split_into_shards(dataset, 4, 3, "s")
    assert sorted(tables) == [0, 1, 2, 3]
    ids = pd.concat(tables.values())["record_id"]
    assert sorted(ids.tolist(), key=int) == [str(i) for i in range(200)]
    for shard_id, table in tables.items():
        assert list(table.columns) == ["record_id", SLICE_COLUMN, "label", "x"]
        np.testing.assert_array_equal(
            assign_shards(table["record_id"], 4, "s"), np.full(len(table), shard_id)
        )
        np.testing.assert_array_equal(
            table[SLICE_COLUMN].to_numpy(), assign_slices(table["record_id"], 3, "s")
        )
        order = list(zip(table[SLICE_COLUMN], table["record_id"], strict=True))
        assert order == sorted(order)
        assert table.index.tolist() == list(range(len(table)))
    by_id = dict(zip(dataset.frame["record_id"], dataset.frame["x"], strict=True))
    joined = pd.concat(tables.values())
    assert all(by_id[r] == x for r, x in zip(joined["record_id"], joined["x"], strict=True))


def test_split_into_shards_writes_empty_shards_too() -> None:
    tables = split_into_shards(dataset_of(["only"]), 5, 2, "s")
    assert sorted(tables) == [0, 1, 2, 3, 4]
    assert sum(len(t) for t in tables.values()) == 1
    assert all(
        list(t.columns) == ["record_id", SLICE_COLUMN, "label", "x"] for t in tables.values()
    )


@settings(max_examples=40, deadline=None)
@given(unique_ids, st.data())
def test_deleting_rows_moves_no_remaining_record(ids: list[object], data: st.DataObject) -> None:
    keep = data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    if not any(keep):
        keep[0] = True
    dataset = dataset_of(ids)
    before = placement(split_into_shards(dataset, 3, 4, "salt"))
    after = placement(split_into_shards(dataset.subset(np.array(keep)), 3, 4, "salt"))
    assert after == {r: before[r] for r in after}
    assert set(after) == {canonical_id(r) for r, k in zip(ids, keep, strict=True) if k}


# ------------------------------------------------------------------------------ files
def test_write_and_read_shard_round_trip(tmp_path: Path) -> None:
    table = split_into_shards(dataset_of(list(range(30))), 1, 2, "s")[0]
    path = tmp_path / "deep" / "shards" / shard_file_name(0)
    write_shard(table, path)
    pd.testing.assert_frame_equal(read_shard(path), table)
    pd.testing.assert_frame_equal(
        read_shard(path, ["record_id", SLICE_COLUMN]), table[["record_id", SLICE_COLUMN]]
    )
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / shard_file_name(0)
    good = pd.DataFrame({"record_id": [1, 2], "x": [0.5, 1.5]})
    write_shard(good, path)
    before = path.read_bytes()
    unwritable = pd.DataFrame({"record_id": [1, "two"], "x": [0.5, 1.5]})
    with pytest.raises((TypeError, ValueError)):
        write_shard(unwritable, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_read_shard_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="shard file is missing"):
        read_shard(tmp_path / shard_file_name(3))
    broken = tmp_path / shard_file_name(4)
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(StoreError, match="cannot be read"):
        read_shard(broken)

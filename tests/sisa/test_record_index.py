"""The record index: lookups, rebuilds, and what planning and forgetting read and write."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import synthetic_frame
from unlearn_ops.errors import DatasetError, UnknownRecordsError
from unlearn_ops.params import Params
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.checkpoints import stage_keys
from unlearn_ops.sisa.dataset_chunks import load_dataset_chunks
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.sisa.record_index import FileIndex, RecordIndex, index_keys
from unlearn_ops.sisa.sharding import SLICE_COLUMN


def file_digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))
    }


def garble_keeping_stamp(path: Path) -> None:
    """Zeros of the same size, the mtime restored: an unreadable file with the same stamp."""
    info = path.stat()
    path.write_bytes(b"\0" * info.st_size)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


@pytest.fixture
def prepared(tmp_path: Path, tiny_params: Params, cpu_settings: Settings) -> SisaEnsemble:
    ensemble = SisaEnsemble(tmp_path / "ensemble", tiny_params, cpu_settings)
    ensemble.prepare(Dataset.from_frame(synthetic_frame(600), source="synthetic"))
    return ensemble


def shard_ids_of(ensemble: SisaEnsemble, shard_id: int) -> list[int]:
    return ensemble.read_shard(shard_id)["record_id"].tolist()


def test_file_index_looks_up_slices_and_drops_one_entry_per_key() -> None:
    keys = np.array([30, 10, 20], dtype=np.uint64)
    index = FileIndex.from_keys(keys, np.array([2, 0, 1]))
    assert index.keys.tolist() == [10, 20, 30]
    assert index.slices_of(np.array([20, 99, 30], dtype=np.uint64)).tolist() == [1, -2, 2]
    assert index.slice_counts(4) == [1, 1, 1, 0]
    smaller = index.without(np.array([20, 77], dtype=np.uint64))
    assert smaller.keys.tolist() == [10, 30]
    assert smaller.slices.tolist() == [0, 2]
    empty = FileIndex.from_keys(np.zeros(0, dtype=np.uint64))
    assert empty.slices_of(np.array([5], dtype=np.uint64)).tolist() == [-2]


def test_index_keys_depend_on_the_secret() -> None:
    first = index_keys(["7", "8"], b"one")
    assert first.dtype == np.uint64
    assert first.tolist() == index_keys(["7", "8"], b"one").tolist()
    assert first.tolist() != index_keys(["7", "8"], b"two").tolist()


def test_an_entry_is_rebuilt_when_its_file_changes_or_the_key_does(tmp_path: Path) -> None:
    data = tmp_path / "shard-000.parquet"
    pd.DataFrame({"record_id": [1, 2], SLICE_COLUMN: [0, 1]}).to_parquet(data)

    def read(path: Path) -> tuple[list[str], np.ndarray]:
        table = pd.read_parquet(path)
        return table["record_id"].astype(str).tolist(), table[SLICE_COLUMN].to_numpy()

    index = RecordIndex(tmp_path / "index", b"k", read)
    assert len(index.entry(data)) == 2
    assert index.rebuilt == ["shard-000.parquet"]
    assert len(index.entry(data)) == 2
    assert index.rebuilt == ["shard-000.parquet"]  # the stored entry served
    pd.DataFrame({"record_id": [1, 2, 3], SLICE_COLUMN: [0, 1, 1]}).to_parquet(data)
    assert index.entry(data).slice_counts(2) == [1, 2]
    assert len(index.rebuilt) == 2
    other_key = RecordIndex(tmp_path / "index", b"other", read)
    assert len(other_key.entry(data)) == 3
    assert other_key.rebuilt == ["shard-000.parquet"]


def test_same_bytes_with_a_new_mtime_keep_their_entry_and_a_revision_restamps_it(
    tmp_path: Path,
) -> None:
    # `dvc commit` copies a data file into its cache and back: same bytes, new times.
    data = tmp_path / "holdout.parquet"
    pd.DataFrame({"record_id": [1, 2]}).to_parquet(data)

    def read(path: Path) -> tuple[list[str], None]:
        return pd.read_parquet(path)["record_id"].astype(str).tolist(), None

    index = RecordIndex(tmp_path / "index", b"k", read)
    index.entry(data)
    entry = tmp_path / "index" / "holdout.npz"
    stored = entry.read_bytes()
    copy = tmp_path / "copy.parquet"
    shutil.copyfile(data, copy)
    os.replace(copy, data)
    os.utime(data, ns=(1, 1))
    assert len(index.entry(data)) == 2
    assert index.rebuilt == ["holdout.parquet"]  # not rebuilt: the digest matched
    assert entry.read_bytes() == stored  # and nothing written on a read
    index.restamp([data])
    assert entry.read_bytes() != stored
    with np.load(entry) as restamped:
        assert restamped["stamp"].tolist() == [data.stat().st_size, 1]
    pd.DataFrame({"record_id": [1, 2, 3]}).to_parquet(data)
    os.utime(data, ns=(2, 2))
    index.restamp([data])  # other bytes: left for entry() to rebuild
    assert len(index.entry(data)) == 3
    assert index.rebuilt == ["holdout.parquet", "holdout.parquet"]


def test_planning_reads_no_shard_file(prepared: SisaEnsemble) -> None:
    victims = shard_ids_of(prepared, 0)[:5] + shard_ids_of(prepared, 2)[:3]
    expected = prepared.plan_forget(victims)
    for shard_id in prepared.shard_ids:
        garble_keeping_stamp(prepared.shard_path(shard_id))
    garble_keeping_stamp(prepared.holdout_path)
    plan = prepared.plan_forget(victims)
    assert plan == expected
    assert plan.shard_ids == [0, 2]
    assert [s.num_records for s in plan.shards] == [5, 3]
    with pytest.raises(UnknownRecordsError):
        prepared.plan_forget(["no-such-id"])


def test_a_one_record_forget_writes_one_data_file_and_reads_no_other(
    prepared: SisaEnsemble,
) -> None:
    victim = shard_ids_of(prepared, 1)[3]
    before = file_digests(prepared.shards_dir)
    holdout = hashlib.sha256(prepared.holdout_path.read_bytes()).hexdigest()
    for shard_id in (0, 2):
        garble_keeping_stamp(prepared.shard_path(shard_id))
    garbled = file_digests(prepared.shards_dir)
    plan, removed = prepared.remove_records([victim])
    after = file_digests(prepared.shards_dir)
    assert removed == [str(victim)]
    assert plan.shard_ids == [1]
    assert [name for name in after if after[name] != garbled[name]] == ["shard-001.parquet"]
    assert after["shard-001.parquet"] != before["shard-001.parquet"]
    assert hashlib.sha256(prepared.holdout_path.read_bytes()).hexdigest() == holdout
    assert victim not in shard_ids_of(prepared, 1)
    # The entry was updated with the file, not rebuilt from it; a second forget of the
    # same id is a no-op, a new id in the same shard is found.
    assert prepared.record_index.rebuilt == []
    again = prepared.plan_forget([victim])
    assert again.already_forgotten == (str(victim),)
    assert prepared.plan_forget([shard_ids_of(prepared, 1)[0]]).shard_ids == [1]


def test_a_workspace_without_an_index_builds_it_on_first_use(
    prepared: SisaEnsemble, tiny_params: Params, cpu_settings: Settings
) -> None:
    victims = shard_ids_of(prepared, 0)[:2] + shard_ids_of(prepared, 1)[:1]
    expected = prepared.plan_forget(victims)
    shutil.rmtree(prepared.root / ".unlearn-ops" / "record-index")
    fresh = SisaEnsemble(prepared.root, tiny_params, cpu_settings)
    assert fresh.plan_forget(victims) == expected
    assert sorted(fresh.record_index.rebuilt) == [
        "shard-000.parquet",
        "shard-001.parquet",
        "shard-002.parquet",
    ]


def test_a_shard_file_replaced_from_elsewhere_is_indexed_again(prepared: SisaEnsemble) -> None:
    table = prepared.read_shard(2)
    moved = int(table["record_id"].iloc[0])
    table.iloc[1:].to_parquet(prepared.shard_path(2), index=False)  # as a restore would
    with pytest.raises(UnknownRecordsError):
        prepared.plan_forget([moved])
    assert prepared.record_index.rebuilt == ["shard-002.parquet"]


def test_chunked_prepare_writes_what_a_whole_prepare_writes(
    tmp_path: Path, tiny_params: Params, cpu_settings: Settings
) -> None:
    frame = synthetic_frame(500, seed=4)
    frame["record_id"] = [f"r{i}" if i % 3 else i for i in range(500)]
    frame["record_id"] = frame["record_id"].astype(str)
    source = tmp_path / "data.parquet"
    frame.to_parquet(source, index=False)
    whole = SisaEnsemble(tmp_path / "whole", tiny_params, cpu_settings)
    whole_counts = whole.prepare(Dataset.from_frame(pd.read_parquet(source), source=str(source)))
    chunked = SisaEnsemble(tmp_path / "chunked", tiny_params, cpu_settings)
    chunks = load_dataset_chunks(source, chunk_rows=37)
    assert chunked.prepare(chunks) == whole_counts
    assert chunked.manifest() == whole.manifest()
    for shard_id in whole.shard_ids:
        expected = whole.read_shard(shard_id)
        pd.testing.assert_frame_equal(chunked.read_shard(shard_id), expected)
        assert chunked.data_keys(shard_id) == whole.data_keys(shard_id)
        assert chunked.data_keys(shard_id) == stage_keys(
            expected,
            shard_id=shard_id,
            num_slices=tiny_params.sisa.slices,
            training_hash=tiny_params.training_hash(),
            id_column="record_id",
            label_column="label",
        )
    pd.testing.assert_frame_equal(chunked.read_holdout(), whole.read_holdout())


def test_chunked_prepare_refuses_ids_duplicated_across_chunks(
    tmp_path: Path, tiny_params: Params, cpu_settings: Settings
) -> None:
    frame = synthetic_frame(120)
    frame.loc[100, "record_id"] = 5  # chunk 1 holds 5 too
    source = tmp_path / "data.parquet"
    frame.to_parquet(source, index=False)
    ensemble = SisaEnsemble(tmp_path / "ensemble", tiny_params, cpu_settings)
    with pytest.raises(DatasetError, match=r"1 duplicated id\(s\) in 'record_id': 5"):
        ensemble.prepare(load_dataset_chunks(source, chunk_rows=50))
    assert not ensemble.shards_dir.exists()

"""Shard arrays: the same keys, weights and index as the frame, read with less memory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unlearn_ops.errors import StoreError
from unlearn_ops.params import Params
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.checkpoint_index import CheckpointIndex, IndexEntry
from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore, stage_keys
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.sisa.shard_arrays import ShardArrays, read_shard_arrays
from unlearn_ops.sisa.sharding import SLICE_COLUMN, read_shard, split_into_shards, write_shard
from unlearn_ops.sisa.training import ShardColumns, train_shard

PIN_PARAMS = {
    "seed": 3,
    "sisa": {"shards": 3, "slices": 3, "salt": "pin"},
    "model": {"name": "mlp", "hidden_sizes": [8]},
    "training": {"epochs_per_stage": 2, "batch_size": 16, "learning_rate": 0.05},
}


def pin_frame(kind: str) -> pd.DataFrame:
    """240 records: integer ids and float32 features (`int`), or text ids, float64 and
    integer features and a sensitive column (`text`)."""
    rng = np.random.default_rng(7)
    n = 240
    labels = rng.integers(0, 3, n)
    dtype = np.float32 if kind == "int" else np.float64
    frame = pd.DataFrame(
        rng.normal(0, 1, (n, 4)).astype(dtype), columns=[f"f{i}" for i in range(4)]
    )
    if kind != "int":
        frame["count"] = rng.integers(0, 1000, n).astype(np.int64)
        frame["group"] = rng.integers(0, 2, n).astype(np.int64)
    frame.insert(0, "label", labels.astype(np.int64))
    ids = np.arange(n) if kind == "int" else [f"r-{i * 7 % n}x" for i in range(n)]
    frame.insert(0, "record_id", ids)
    return frame


# Taken from the code before shards were read as arrays (commit fa127d1): training, the
# stage keys and the checkpoint index must not change a bit (exactness certificates and
# every checkpoint's name depend on them).
PINNED = {
    "int": {
        "weights": {
            "train:0": "a7273a8f28648bfbdec57f9e658ed535f6856e2e32a7ecb9c5ab6cbae2fdc351",
            "train:1": "d9ce77928dd7a67bcd17949dcb83cb7f22b9885c5e50863c7da7a8d4d5772863",
            "train:2": "dd689c0cf51ef98e451fcdc73f8a3f41c7e312400079baf97853caf229fdfa03",
            "forget:0": "df246560b227258d76e143f98f0acd5059f34d9b3fdb01c5e6d8f18770f89a6a",
        },
        "keys": "d5d7d785dcbb5e5cb398913cc971817616e59d67af6822170e8f0f39bd8bfebc",
        "index": "f22acc214fb63e2ef361cff983342d2e10901265b01f3efd7457f8d0a94a73cb",
    },
    "text": {
        "weights": {
            "train:0": "53542575e5475c5da59866e70854fefc9527e667594f3a3fe1e776a49c011bd0",
            "train:1": "a06c036edd91c41dd9fa51fb762102900955898154221b166de181865a3a3e05",
            "train:2": "e435b5a32b602a5d540acef127159e82852672c89853770db8029be87d587290",
            "forget:1": "8bd31f67329ca7ed19fbf9bc0959d63e314cf265593893acc48050f319962320",
            "forget:2": "32a0d8653b4459345c15ae4eb0b004403a0234fd2fb78fa34b8307950033a379",
        },
        "keys": "42fc3c860b3a4b98cfc5726ad2fdc24e10759afb7cb0e33d21b704df2947fe6d",
        "index": "4011034299f23b31db52576f2dd86a36e36ce6a42b26e8029c8b4b99a2ad9a32",
    },
}


@pytest.mark.parametrize("kind", ["int", "text"])
def test_a_workspace_trains_and_forgets_to_the_bits_pinned_before_arrays(
    tmp_path: Path, kind: str
) -> None:
    settings = Settings(device="cpu", torch_threads=1, max_parallel_shards=1, id_hash_key="pin-key")
    ensemble = SisaEnsemble(tmp_path, Params.from_mapping(PIN_PARAMS), settings)
    sensitive = None if kind == "int" else "group"
    ensemble.prepare(Dataset.from_frame(pin_frame(kind), source="pin", sensitive_column=sensitive))
    weights: dict[str, str] = {}
    keys: dict[str, list[str]] = {}
    trained = ensemble.train().models
    forgotten = ensemble.forget([5, 77] if kind == "int" else ["r-35x", "r-161x"]).training.models
    for tag, models in (("train", trained), ("forget", forgotten)):
        for model in models:
            weights[f"{tag}:{model.shard_id}"] = model.weights_hash
            keys[f"{tag}:{model.shard_id}"] = model.stage_keys
    index = sorted((tmp_path / "checkpoints" / "index").glob("??/*.json"))

    assert weights == PINNED[kind]["weights"]
    assert (
        hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()
        == (PINNED[kind]["keys"])
    )
    assert (
        hashlib.sha256(b"".join(p.read_bytes() for p in index)).hexdigest()
        == (PINNED[kind]["index"])
    )


def shard_of(frame: pd.DataFrame, **options: str | None) -> pd.DataFrame:
    dataset = Dataset.from_frame(frame, source="t", **options)
    return split_into_shards(dataset, 2, 3, "arrays")[1]


FRAMES = {
    "int ids, float32": lambda: shard_of(pin_frame("int")),
    "text ids, mixed dtypes, a sensitive column": lambda: shard_of(
        pin_frame("text"), sensitive_column="group"
    ),
    "float ids": lambda: shard_of(pin_frame("int").assign(record_id=lambda f: f.record_id + 0.5)),
}


def assert_same_stage_keys(table: pd.DataFrame, shard_id: int) -> None:
    """The stage keys of `table`'s arrays are those of the frame (3 slices)."""
    arrays = ShardArrays.from_frame(table, "record_id", "label")
    expected = stage_keys(
        table,
        shard_id=shard_id,
        num_slices=3,
        training_hash="h",
        id_column="record_id",
        label_column="label",
    )
    assert arrays.stage_keys(shard_id=shard_id, num_slices=3, training_hash="h") == expected


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_array_stage_keys_are_the_frames(name: str) -> None:
    assert_same_stage_keys(FRAMES[name](), shard_id=1)


def test_stage_keys_of_an_empty_slice_are_the_frames() -> None:
    table = shard_of(pin_frame("int"))
    assert_same_stage_keys(table[table[SLICE_COLUMN] != 1].reset_index(drop=True), shard_id=0)


def assert_same_arrays(left: ShardArrays, right: ShardArrays) -> None:
    assert left.value_columns == right.value_columns
    assert left.record_ids.tolist() == right.record_ids.tolist()
    assert left.slices.tobytes() == right.slices.tobytes()
    assert left.labels.tobytes() == right.labels.tobytes()
    assert left.values.dtype == right.values.dtype == np.float32
    assert left.values.tobytes() == right.values.tobytes()


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_reading_a_file_column_by_column_gives_the_frames_arrays(tmp_path: Path, name: str) -> None:
    path = tmp_path / "shard.parquet"
    write_shard(FRAMES[name](), path)
    read = read_shard_arrays(path, "record_id", "label")
    assert_same_arrays(read, ShardArrays.from_frame(read_shard(path), "record_id", "label"))


def test_a_file_with_nulls_is_read_through_pandas_to_the_same_arrays(tmp_path: Path) -> None:
    table = shard_of(pin_frame("int"))
    table["extra"] = np.where(np.arange(len(table)) % 5 == 0, np.nan, 1.0)
    path = tmp_path / "shard.parquet"
    write_shard(table, path)
    read = read_shard_arrays(path, "record_id", "label")
    assert np.isnan(read.values[0, -1])
    assert_same_arrays(read, ShardArrays.from_frame(read_shard(path), "record_id", "label"))


def test_a_missing_shard_file_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="missing"):
        read_shard_arrays(tmp_path / "absent.parquet", "record_id", "label")


def test_training_from_the_file_is_training_from_the_frame(tmp_path: Path) -> None:
    table = FRAMES["text ids, mixed dtypes, a sensitive column"]()
    path = tmp_path / "shard.parquet"
    write_shard(table, path)
    params = Params.from_mapping(PIN_PARAMS)
    columns = ShardColumns("record_id", "label", ("f0", "f1", "f2", "f3", "count"), 3)

    def train(data: pd.DataFrame | ShardArrays) -> tuple[str, list[str]]:
        model = train_shard(
            data, shard_id=1, params=params, columns=columns, store=MemoryCheckpointStore()
        )
        return model.weights_hash, model.stage_keys

    assert train(read_shard_arrays(path, "record_id", "label")) == train(table)


def test_index_entries_streamed_from_arrays_are_the_entries_written_whole(
    tmp_path: Path,
) -> None:
    entry = IndexEntry(
        key="abc123",
        shard_id=2,
        stage=1,
        parent="abc000",
        record_hashes=tuple(
            sorted(hashlib.sha256(str(i).encode()).hexdigest() for i in range(9000))
        ),
        bytes_md5="0" * 32,
    )
    whole = CheckpointIndex(tmp_path / "whole")
    whole.write(entry)
    streamed = CheckpointIndex(tmp_path / "streamed")
    hashes = np.array([h.encode() for h in entry.record_hashes], dtype="S64")
    streamed.write(IndexEntry("abc123", 2, 1, "abc000", (), "0" * 32), hashes)

    assert (streamed.root / "ab" / "abc123.json").read_bytes() == (
        whole.root / "ab" / "abc123.json"
    ).read_bytes()
    assert streamed.entry("abc123") == entry


def test_a_forget_rewrites_a_file_batch_by_batch_to_the_frame_without_its_rows(
    tmp_path: Path,
) -> None:
    settings = Settings(device="cpu", torch_threads=1, max_parallel_shards=1, id_hash_key="k")
    ensemble = SisaEnsemble(tmp_path, Params.from_mapping(PIN_PARAMS), settings)
    ensemble.prepare(Dataset.from_frame(pin_frame("text"), source="pin", sensitive_column="group"))
    before = {s: ensemble.read_shard(s) for s in ensemble.shard_ids}
    holdout = ensemble.read_holdout()
    gone = ["r-35x", "r-161x", str(holdout["record_id"].iloc[3])]

    ensemble.remove_records(gone)

    for shard_id, table in before.items():
        expected = table[~table["record_id"].isin(gone)].reset_index(drop=True)
        pd.testing.assert_frame_equal(ensemble.read_shard(shard_id), expected)
    expected = holdout[~holdout["record_id"].isin(gone)].reset_index(drop=True)
    pd.testing.assert_frame_equal(ensemble.read_holdout(), expected)
    assert sum(len(t) for t in before.values()) - 2 == sum(
        len(ensemble.read_shard(s)) for s in ensemble.shard_ids
    )

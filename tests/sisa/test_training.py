"""SISA shard training: deterministic, resumable from the longest cached prefix, exact."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import columns_of
from unlearn_ops.errors import DeviceUnavailableError
from unlearn_ops.params import Params
from unlearn_ops.sisa.checkpoints import CheckpointStore, MemoryCheckpointStore
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.devices import device_kind, device_name, resolve_device
from unlearn_ops.sisa.models import build_model
from unlearn_ops.sisa.planning import schedule_cost
from unlearn_ops.sisa.sharding import SLICE_COLUMN, split_into_shards
from unlearn_ops.sisa.training import (
    ShardColumns,
    ShardModel,
    load_state,
    serialize_state,
    train_shard,
    weights_digest,
)


@pytest.fixture(scope="module")
def shard(synthetic_dataset: Dataset, tiny_params: Params) -> pd.DataFrame:
    """Shard 0 of the synthetic dataset: about 100 records over 3 slices."""
    sisa = tiny_params.sisa
    return split_into_shards(synthetic_dataset, sisa.shards, sisa.slices, sisa.salt)[0]


@pytest.fixture(scope="module")
def columns(synthetic_dataset: Dataset) -> ShardColumns:
    return columns_of(synthetic_dataset)


def train(
    table: pd.DataFrame,
    params: Params,
    columns: ShardColumns,
    store: CheckpointStore | None = None,
    shard_id: int = 0,
) -> ShardModel:
    return train_shard(
        table,
        shard_id=shard_id,
        params=params,
        columns=columns,
        store=MemoryCheckpointStore() if store is None else store,
    )


def assert_same_weights(left: ShardModel, right: ShardModel) -> None:
    assert left.weights_hash == right.weights_hash
    assert sorted(left.state) == sorted(right.state)
    for name, tensor in left.state.items():
        assert torch.equal(tensor, right.state[name]), name


def test_the_shard_has_records_in_every_slice(shard: pd.DataFrame) -> None:
    # The tests below forget from each slice; they need all three to be non-empty.
    assert np.bincount(shard[SLICE_COLUMN], minlength=3).min() >= 20


# --------------------------------------------------------------------- weights digest
def test_weights_digest_sees_values_names_dtypes_and_shapes() -> None:
    state = {"a.weight": torch.zeros(2, 3), "a.bias": torch.ones(3)}
    base = weights_digest(state)
    assert base == weights_digest({"a.bias": torch.ones(3), "a.weight": torch.zeros(2, 3)})
    changed = dict(state, **{"a.bias": torch.tensor([1.0, 1.0, 1.0 + 2**-20])})
    assert weights_digest(changed) != base
    assert weights_digest({"b.weight": state["a.weight"], "a.bias": state["a.bias"]}) != base
    assert weights_digest(dict(state, **{"a.bias": torch.ones(3, dtype=torch.float64)})) != base
    assert weights_digest(dict(state, **{"a.weight": torch.zeros(3, 2)})) != base


def test_state_serialization_round_trip() -> None:
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(3)}
    again = load_state(serialize_state(state))
    assert weights_digest(again) == weights_digest(state)


# ------------------------------------------------------------------------ determinism
def test_training_twice_gives_identical_weights(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    first = train(shard, tiny_params, columns)
    second = train(shard, tiny_params, columns)
    assert_same_weights(first, second)
    assert first.stage_keys == second.stage_keys
    assert first.resumed_from_stage == 0
    assert first.stages_trained == [0, 1, 2]
    assert first.num_records == len(shard)


def test_row_order_of_the_table_does_not_matter(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    shuffled = shard.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert_same_weights(train(shard, tiny_params, columns), train(shuffled, tiny_params, columns))


def test_training_moves_the_weights_and_learns(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    model = train(shard, tiny_params, columns)
    one_epoch = Params.from_mapping(
        {
            **tiny_params.model_dump(),
            "training": {**tiny_params.training.model_dump(), "epochs_per_stage": 1},
        }
    )
    assert train(shard, one_epoch, columns).weights_hash != model.weights_hash
    module = build_model(tiny_params.model, len(columns.feature_columns), columns.num_classes)
    module.load_state_dict(model.state)
    features = torch.tensor(shard[list(columns.feature_columns)].to_numpy(dtype=np.float32))
    with torch.no_grad():
        predicted = module(features).argmax(dim=1).numpy()
    assert (predicted == shard[columns.label_column].to_numpy()).mean() > 0.6


def test_seed_and_shard_id_change_the_weights(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    base = train(shard, tiny_params, columns).weights_hash
    reseeded = Params.from_mapping({**tiny_params.model_dump(), "seed": tiny_params.seed + 1})
    assert train(shard, reseeded, columns).weights_hash != base
    assert train(shard, tiny_params, columns, shard_id=1).weights_hash != base


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"name": "mlp", "hidden_sizes": [16], "dropout": 0.3}},
        {"training": {"epochs_per_stage": 2, "batch_size": 16, "optimizer": "sgd"}},
    ],
    ids=["dropout", "sgd"],
)
def test_dropout_and_sgd_are_deterministic_too(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns, change: dict[str, object]
) -> None:
    params = Params.from_mapping({**tiny_params.model_dump(), **change})
    first = train(shard, params, columns)
    assert_same_weights(first, train(shard, params, columns))
    assert first.weights_hash != train(shard, tiny_params, columns).weights_hash


def test_shards_trained_in_parallel_threads_match_sequential(
    synthetic_dataset: Dataset, tiny_params: Params, columns: ShardColumns
) -> None:
    dropout = Params.from_mapping(
        {**tiny_params.model_dump(), "model": {"hidden_sizes": [16], "dropout": 0.2}}
    )
    sisa = dropout.sisa
    tables = split_into_shards(synthetic_dataset, sisa.shards, sisa.slices, sisa.salt)

    def run(shard_id: int) -> str:
        return train(tables[shard_id], dropout, columns, shard_id=shard_id).weights_hash

    sequential = [run(s) for s in tables]
    with ThreadPoolExecutor(max_workers=3) as pool:
        parallel = list(pool.map(run, list(tables) * 2))
    assert parallel == sequential * 2


# --------------------------------------------------------------------------- resuming
def test_checkpoints_are_saved_under_the_stage_keys(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    store = MemoryCheckpointStore()
    model = train(shard, tiny_params, columns, store)
    assert list(store.keys()) == sorted(model.stage_keys)
    assert weights_digest(load_state(store.load(model.stage_keys[-1]))) == model.weights_hash
    epochs = tiny_params.training.epochs_per_stage
    counts = np.bincount(shard[SLICE_COLUMN], minlength=3).tolist()
    assert model.samples_processed == epochs * schedule_cost(counts)


def test_a_fully_cached_shard_trains_nothing(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    store = MemoryCheckpointStore()
    first = train(shard, tiny_params, columns, store)
    again = train(shard, tiny_params, columns, store)
    assert again.resumed_from_stage == 3
    assert again.stages_trained == []
    assert again.samples_processed == 0
    assert_same_weights(first, again)


@pytest.mark.parametrize("slice_id", [0, 1, 2])
def test_forgetting_from_slice_k_retrains_stages_k_onwards_exactly(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns, slice_id: int
) -> None:
    store = MemoryCheckpointStore()
    before = train(shard, tiny_params, columns, store)
    victims = shard.index[shard[SLICE_COLUMN] == slice_id][:2]
    remaining = shard.drop(index=victims).reset_index(drop=True)
    calls: list[tuple[int, int, int]] = []
    resumed = train_shard(
        remaining,
        shard_id=0,
        params=tiny_params,
        columns=columns,
        store=store,
        progress=lambda *args: calls.append(args),
    )
    assert resumed.resumed_from_stage == slice_id
    assert resumed.stages_trained == list(range(slice_id, 3))
    assert calls == [(0, stage, 3) for stage in range(slice_id, 3)]
    assert resumed.stage_keys[:slice_id] == before.stage_keys[:slice_id]
    assert all(
        a != b
        for a, b in zip(resumed.stage_keys[slice_id:], before.stage_keys[slice_id:], strict=True)
    )
    counts = np.bincount(remaining[SLICE_COLUMN], minlength=3).tolist()
    epochs = tiny_params.training.epochs_per_stage
    assert resumed.samples_processed == epochs * schedule_cost(counts, slice_id)
    scratch = train(remaining, tiny_params, columns)
    assert scratch.resumed_from_stage == 0
    assert_same_weights(resumed, scratch)
    assert resumed.weights_hash != before.weights_hash


def test_resumes_from_the_last_cached_stage_only(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    store = MemoryCheckpointStore()
    full = train(shard, tiny_params, columns, store)
    store.delete(full.stage_keys[1])
    store.delete(full.stage_keys[2])
    again = train(shard, tiny_params, columns, store)
    assert again.resumed_from_stage == 1
    assert again.stages_trained == [1, 2]
    assert_same_weights(again, full)


def test_an_empty_shard_trains_to_its_initial_weights(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    empty = shard.iloc[:0]
    model = train(empty, tiny_params, columns)
    assert model.num_records == 0
    assert model.samples_processed == 0
    assert model.stages_trained == [0, 1, 2]
    assert_same_weights(model, train(empty, tiny_params, columns))
    assert len(set(model.stage_keys)) == 3


def test_training_leaves_the_global_rng_alone(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(shard.iloc[:10], tiny_params, columns)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- device
def test_cpu_resolves_to_cpu() -> None:
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_without_a_gpu_auto_is_cpu_and_cuda_is_refused() -> None:
    assert resolve_device("auto") == "cpu"
    with pytest.raises(DeviceUnavailableError, match="UNLEARN_OPS_DEVICE"):
        resolve_device("cuda")


def test_the_weights_record_the_kind_of_device(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    assert train(shard, tiny_params, columns).device == "cpu"
    assert [device_kind(d) for d in ("cpu", "cuda", "cuda:1")] == ["cpu", "cuda", "cuda"]
    assert device_name("cpu") == "cpu"


def test_resolving_a_device_fixes_cublas_before_cuda_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    resolve_device("cpu")
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    resolve_device("auto")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own choice stays
    resolve_device("auto")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_twice_gives_identical_weights(
    shard: pd.DataFrame, tiny_params: Params, columns: ShardColumns
) -> None:
    def on_cuda() -> ShardModel:
        return train_shard(
            shard,
            shard_id=0,
            params=tiny_params,
            columns=columns,
            store=MemoryCheckpointStore(),
            device=resolve_device("cuda"),
        )

    first, second = on_cuda(), on_cuda()
    assert first.device == "cuda"
    assert_same_weights(first, second)
    assert torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.benchmark
    assert device_name("cuda").startswith("cuda: ")


def test_cuda_stages_have_keys_of_their_own(tiny_params: Params) -> None:
    from unlearn_ops.sisa.training import _keyed_training_hash

    # CPU keys are those of workspaces made before devices counted; CUDA's never collide.
    assert _keyed_training_hash(tiny_params, "cpu") == tiny_params.training_hash()
    assert _keyed_training_hash(tiny_params, "cuda:0") == tiny_params.training_hash() + "@cuda"

"""SisaEnsemble on real files: prepare, train, forget exactly, predict."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearn_ops.errors import InvalidRequestError, StoreError, UnknownRecordsError
from unlearn_ops.params import Params
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.sisa.sharding import SLICE_COLUMN
from unlearn_ops.sisa.training import ShardModel, load_state, train_shard, weights_digest


def directory_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root`, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def train_from_scratch(ensemble: SisaEnsemble, shard_id: int) -> ShardModel:
    """The shard trained on its current records with no checkpoint to resume from."""
    return train_shard(
        ensemble.read_shard(shard_id),
        shard_id=shard_id,
        params=ensemble.params,
        columns=ensemble.columns(),
        store=MemoryCheckpointStore(),
    )


def served(ensemble: SisaEnsemble) -> dict[int, dict[str, Any]]:
    info = {s: ensemble.served_model_info(s) for s in ensemble.shard_ids}
    assert all(value is not None for value in info.values())
    return {s: value for s, value in info.items() if value is not None}


def ids_of(ensemble: SisaEnsemble, shard_id: int, slice_id: int | None = None) -> list[int]:
    table = ensemble.read_shard(shard_id)
    if slice_id is not None:
        table = table[table[SLICE_COLUMN] == slice_id]
    return [int(r) for r in table["record_id"]]


def training_ids(ensemble: SisaEnsemble) -> set[int]:
    return {r for s in ensemble.shard_ids for r in ids_of(ensemble, s)}


def holdout_ids(ensemble: SisaEnsemble) -> set[int]:
    return {int(r) for r in ensemble.read_holdout()["record_id"]}


def assert_served_is_exact(ensemble: SisaEnsemble, shard_id: int) -> None:
    """Served weights (file and metadata) equal a from-scratch training, bit for bit."""
    scratch = train_from_scratch(ensemble, shard_id)
    info = ensemble.served_model_info(shard_id)
    assert info is not None
    assert info["weights_hash"] == scratch.weights_hash
    assert info["stage_keys"] == scratch.stage_keys
    state = load_state(ensemble.model_path(shard_id).read_bytes())
    assert sorted(state) == sorted(scratch.state)
    for name, tensor in state.items():
        assert torch.equal(tensor, scratch.state[name]), name


# ---------------------------------------------------------------------------- prepare
def test_prepare_writes_the_layout(
    tmp_path: Path, tiny_params: Params, cpu_settings: Settings, synthetic_dataset: Dataset
) -> None:
    ensemble = SisaEnsemble(tmp_path / "e", tiny_params, cpu_settings)
    assert not (tmp_path / "e").exists()  # construction does no I/O
    counts = ensemble.prepare(synthetic_dataset)
    assert sorted(counts) == [0, 1, 2]
    assert sorted(p.name for p in ensemble.shards_dir.iterdir()) == [
        "shard-000.parquet",
        "shard-001.parquet",
        "shard-002.parquet",
    ]
    train_ids = training_ids(ensemble)
    held = holdout_ids(ensemble)
    assert sum(counts.values()) == len(train_ids)
    assert not train_ids & held
    assert train_ids | held == set(range(300))
    assert 0.1 < len(held) / 300 < 0.3
    manifest = ensemble.manifest()
    assert manifest["feature_columns"] == [f"f{i}" for i in range(6)]
    assert (manifest["shards"], manifest["slices"], manifest["num_classes"]) == (3, 3, 3)
    assert ensemble.stale_shards() == [0, 1, 2]


def test_an_unprepared_directory_is_a_store_error(
    tmp_path: Path, tiny_params: Params, cpu_settings: Settings
) -> None:
    ensemble = SisaEnsemble(tmp_path, tiny_params, cpu_settings)
    with pytest.raises(StoreError, match="no ensemble here"):
        ensemble.train()
    with pytest.raises(StoreError, match="no ensemble here"):
        ensemble.forget([1])


def test_other_sharding_params_are_refused(trained_ensemble: SisaEnsemble) -> None:
    params = Params.from_mapping(
        {**trained_ensemble.params.model_dump(), "sisa": {"shards": 4, "slices": 3}}
    )
    other = SisaEnsemble(trained_ensemble.root, params, trained_ensemble.settings)
    with pytest.raises(StoreError, match="prepare and train again"):
        other.train()


# ------------------------------------------------------------------------------ train
def test_trained_ensemble_serves_exact_models(trained_ensemble: SisaEnsemble) -> None:
    assert trained_ensemble.stale_shards() == []
    for shard_id in trained_ensemble.shard_ids:
        assert_served_is_exact(trained_ensemble, shard_id)
        info = trained_ensemble.served_model_info(shard_id)
        assert info is not None
        assert info["stage_keys"] == trained_ensemble.data_keys(shard_id)
        assert info["num_records"] == len(trained_ensemble.read_shard(shard_id))


def test_training_again_resumes_everything_from_checkpoints(
    trained_ensemble: SisaEnsemble,
) -> None:
    before = directory_digest(trained_ensemble.root)
    report = trained_ensemble.train()
    assert report.shard_ids == [0, 1, 2]
    assert report.samples_processed == 0
    assert all(m.resumed_from_stage == 3 for m in report.models)
    assert directory_digest(trained_ensemble.root) == before


def test_parallel_training_matches_sequential(
    tmp_path: Path,
    tiny_params: Params,
    cpu_settings: Settings,
    synthetic_dataset: Dataset,
    trained_template: Path,
) -> None:
    parallel = SisaEnsemble(tmp_path / "parallel", tiny_params, cpu_settings)
    parallel.prepare(synthetic_dataset)
    report = parallel.train(max_workers=2)
    sequential = SisaEnsemble(trained_template, tiny_params, cpu_settings)
    assert report.shard_ids == [0, 1, 2]
    assert served(parallel) == served(sequential)
    for shard_id in parallel.shard_ids:
        assert (
            parallel.model_path(shard_id).read_bytes()
            == sequential.model_path(shard_id).read_bytes()
        )


def test_predictions(trained_ensemble: SisaEnsemble) -> None:
    holdout = trained_ensemble.read_holdout()
    features = holdout[[f"f{i}" for i in range(6)]].to_numpy(dtype=np.float32)
    scores = trained_ensemble.predict_proba(features)
    assert scores.shape == (len(holdout), 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(trained_ensemble.predict(features), scores.argmax(axis=1))
    # Three well-separated blobs: chance is 1/3.
    assert trained_ensemble.evaluate() > 0.7


def test_vote_aggregation_is_used_when_configured(trained_ensemble: SisaEnsemble) -> None:
    params = Params.from_mapping(
        {
            **trained_ensemble.params.model_dump(),
            "sisa": {**trained_ensemble.params.sisa.model_dump(), "aggregation": "vote"},
        }
    )
    voting = SisaEnsemble(trained_ensemble.root, params, trained_ensemble.settings)
    features = np.random.default_rng(0).normal(0.0, 3.0, (50, 6)).astype(np.float32)
    scores = voting.predict_proba(features)
    # Vote scores are whole votes plus mean / 6, normalised by 3 + 1/6 (three shards).
    raw = scores * (3 + 1 / 6)
    votes = np.rint(raw - 1 / 12)
    assert (votes.sum(axis=1) == 3).all()
    assert ((raw - votes) > -1e-6).all()
    assert ((raw - votes) < 1 / 6 + 1e-6).all()
    assert not np.allclose(scores, trained_ensemble.predict_proba(features))


# ----------------------------------------------------------------------------- forget
def test_forget_is_exact_and_leaves_other_shards_alone(trained_ensemble: SisaEnsemble) -> None:
    before = served(trained_ensemble)
    model_bytes = {
        s: trained_ensemble.model_path(s).read_bytes() for s in trained_ensemble.shard_ids
    }
    victims = ids_of(trained_ensemble, 1, 1)[:2] + ids_of(trained_ensemble, 2, 2)[:1]
    report = trained_ensemble.forget(victims)
    assert report.plan.shard_ids == [1, 2]
    assert report.training.shard_ids == [1, 2]
    assert sorted(report.forgotten) == sorted(str(v) for v in victims)
    assert report.changed
    after = served(trained_ensemble)
    # Shard 0 held none of them: same keys, same weights, same file.
    assert after[0] == before[0]
    assert trained_ensemble.model_path(0).read_bytes() == model_bytes[0]
    for shard_id in (1, 2):
        assert after[shard_id]["weights_hash"] != before[shard_id]["weights_hash"]
        assert_served_is_exact(trained_ensemble, shard_id)
    assert trained_ensemble.stale_shards() == []


def test_no_forgotten_id_remains_anywhere(trained_ensemble: SisaEnsemble) -> None:
    in_training = ids_of(trained_ensemble, 0, 0)[:3]
    in_holdout = sorted(holdout_ids(trained_ensemble))[:2]
    report = trained_ensemble.forget(in_training + in_holdout)
    assert report.plan.holdout_records == 2
    remaining = training_ids(trained_ensemble) | holdout_ids(trained_ensemble)
    assert not remaining & set(in_training + in_holdout)
    assert len(remaining) == 300 - 5
    hashes = json.loads((trained_ensemble.root / "forgotten.json").read_text())["hashes"]
    settings_ = trained_ensemble.settings
    assert sorted(hashes) == sorted(settings_.hash_record_id(str(r)) for r in report.forgotten)
    assert not any(str(r) in json.dumps(hashes) for r in in_training)


def test_forgetting_holdout_records_retrains_nothing(trained_ensemble: SisaEnsemble) -> None:
    before = served(trained_ensemble)
    held = sorted(holdout_ids(trained_ensemble))[:3]
    report = trained_ensemble.forget(held)
    assert report.plan.shards == ()
    assert report.plan.holdout_records == 3
    assert report.training.models == ()
    assert served(trained_ensemble) == before
    assert not holdout_ids(trained_ensemble) & set(held)


@pytest.mark.parametrize("slice_id", [0, 1, 2])
def test_forgetting_from_slice_k_retrains_stages_k_onwards(
    trained_ensemble: SisaEnsemble, slice_id: int
) -> None:
    before = served(trained_ensemble)[0]
    report = trained_ensemble.forget(ids_of(trained_ensemble, 0, slice_id)[:1])
    (model,) = report.training.models
    assert model.shard_id == 0
    assert model.resumed_from_stage == slice_id
    assert model.stages_trained == list(range(slice_id, 3))
    (plan,) = report.plan.shards
    assert plan.first_stage == slice_id
    epochs = trained_ensemble.params.training.epochs_per_stage
    assert model.samples_processed == epochs * plan.cost
    after = served(trained_ensemble)[0]
    assert after["stage_keys"][:slice_id] == before["stage_keys"][:slice_id]
    kept = after["stage_keys"][slice_id:]
    assert all(k not in before["stage_keys"] for k in kept)
    assert_served_is_exact(trained_ensemble, 0)


def test_forgetting_the_same_ids_twice_changes_nothing(trained_ensemble: SisaEnsemble) -> None:
    victims = [ids_of(trained_ensemble, 2, 0)[0], sorted(holdout_ids(trained_ensemble))[0]]
    trained_ensemble.forget(victims)
    files = directory_digest(trained_ensemble.root)
    hashes = served(trained_ensemble)
    again = trained_ensemble.forget([str(v) for v in victims])
    assert sorted(again.plan.already_forgotten) == sorted(str(v) for v in victims)
    assert again.plan.shards == ()
    assert again.forgotten == ()
    assert again.training.models == ()
    assert not again.changed
    assert directory_digest(trained_ensemble.root) == files
    assert served(trained_ensemble) == hashes


def test_ids_compare_as_text(trained_ensemble: SisaEnsemble) -> None:
    victim = ids_of(trained_ensemble, 1)[0]
    report = trained_ensemble.forget([str(victim), victim, float(victim)])
    assert report.forgotten == (str(victim),)
    assert report.plan.shards[0].num_records == 1
    assert victim not in training_ids(trained_ensemble)


@pytest.mark.parametrize("known", [False, True], ids=["unknown-only", "mixed"])
def test_unknown_ids_change_nothing(trained_ensemble: SisaEnsemble, known: bool) -> None:
    before = directory_digest(trained_ensemble.root)
    request: list[object] = ["no-such-id", 10_000]
    if known:
        request = [ids_of(trained_ensemble, 0)[0], *request, ids_of(trained_ensemble, 1)[0]]
    with pytest.raises(UnknownRecordsError, match="2 of") as caught:
        trained_ensemble.forget(request)
    assert caught.value.record_ids == ["no-such-id", "10000"]
    assert "nothing was changed" in str(caught.value)
    with pytest.raises(UnknownRecordsError):
        trained_ensemble.plan_forget(request)
    assert directory_digest(trained_ensemble.root) == before


def test_an_empty_request_changes_nothing(trained_ensemble: SisaEnsemble) -> None:
    before = directory_digest(trained_ensemble.root)
    with pytest.raises(InvalidRequestError, match="no record ids"):
        trained_ensemble.forget([])
    assert directory_digest(trained_ensemble.root) == before


def test_plan_forget_changes_nothing_and_predicts_the_forget(
    trained_ensemble: SisaEnsemble,
) -> None:
    victims = ids_of(trained_ensemble, 0, 2)[:1] + ids_of(trained_ensemble, 2, 1)[:2]
    before = directory_digest(trained_ensemble.root)
    plan = trained_ensemble.plan_forget(victims)
    assert directory_digest(trained_ensemble.root) == before
    report = trained_ensemble.forget(victims)
    assert report.plan == plan
    assert [(s.shard_id, s.first_stage) for s in plan.shards] == [(0, 2), (2, 1)]
    assert [m.resumed_from_stage for m in report.training.models] == [2, 1]
    epochs = trained_ensemble.params.training.epochs_per_stage
    assert report.training.samples_processed == epochs * plan.cost
    assert 0.0 < plan.fraction < 0.5


def test_forgetting_a_whole_shard(trained_ensemble: SisaEnsemble) -> None:
    everything = ids_of(trained_ensemble, 2)
    report = trained_ensemble.forget(everything)
    assert report.plan.shards[0].first_stage == 0
    assert len(trained_ensemble.read_shard(2)) == 0
    assert_served_is_exact(trained_ensemble, 2)
    assert trained_ensemble.predict_proba(np.zeros((2, 6), dtype=np.float32)).shape == (2, 3)


def test_a_forget_interrupted_before_retraining_is_completed_by_a_rerun(
    trained_ensemble: SisaEnsemble,
) -> None:
    victims = ids_of(trained_ensemble, 0, 1)[:2]
    plan, removed = trained_ensemble.remove_records(victims)
    assert sorted(removed) == sorted(str(v) for v in victims)
    assert plan.shard_ids == [0]
    # Crash here: the data no longer hold the records, but shard 0 still serves them.
    assert trained_ensemble.stale_shards() == [0]
    report = trained_ensemble.forget(victims)
    assert sorted(report.plan.already_forgotten) == sorted(str(v) for v in victims)
    assert report.training.shard_ids == [0]
    assert report.training.models[0].resumed_from_stage == 1
    assert trained_ensemble.stale_shards() == []
    assert_served_is_exact(trained_ensemble, 0)


def test_predictions_follow_a_forget_in_the_same_object(trained_ensemble: SisaEnsemble) -> None:
    features = np.random.default_rng(1).normal(0.0, 3.0, (40, 6)).astype(np.float32)
    before = trained_ensemble.predict_proba(features)
    trained_ensemble.forget(ids_of(trained_ensemble, 1, 0)[:5])
    after = trained_ensemble.predict_proba(features)
    assert not np.array_equal(after, before)
    fresh = SisaEnsemble(trained_ensemble.root, trained_ensemble.params, trained_ensemble.settings)
    np.testing.assert_array_equal(after, fresh.predict_proba(features))


def test_preparing_again_never_brings_a_forgotten_record_back(
    trained_ensemble: SisaEnsemble, synthetic_dataset: Dataset
) -> None:
    victims = ids_of(trained_ensemble, 0, 0)[:2] + sorted(holdout_ids(trained_ensemble))[:1]
    trained_ensemble.forget(victims)
    tables = {s: trained_ensemble.read_shard(s) for s in trained_ensemble.shard_ids}
    holdout = trained_ensemble.read_holdout()
    trained_ensemble.prepare(synthetic_dataset)
    for shard_id, table in tables.items():
        pd.testing.assert_frame_equal(trained_ensemble.read_shard(shard_id), table)
    pd.testing.assert_frame_equal(trained_ensemble.read_holdout(), holdout)
    assert trained_ensemble.train().samples_processed == 0


# ------------------------------------------------------------------ property: forgets
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_any_forget_is_exact_complete_and_replayable(
    tmp_path_factory: pytest.TempPathFactory,
    trained_template: Path,
    tiny_params: Params,
    cpu_settings: Settings,
    data: st.DataObject,
) -> None:
    root = tmp_path_factory.mktemp("property") / "ensemble"
    shutil.copytree(trained_template, root)
    ensemble = SisaEnsemble(root, tiny_params, cpu_settings)
    candidates = sorted(training_ids(ensemble) | holdout_ids(ensemble))
    victims = data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=6, unique=True))
    holders = [s for s in ensemble.shard_ids if set(ids_of(ensemble, s)) & set(victims)]
    before = served(ensemble)

    report = ensemble.forget(victims)

    assert report.plan.shard_ids == holders

    assert not (training_ids(ensemble) | holdout_ids(ensemble)) & set(victims)
    after = served(ensemble)
    for shard_id in ensemble.shard_ids:
        if shard_id in report.plan.shard_ids:
            assert_served_is_exact(ensemble, shard_id)
        else:
            assert after[shard_id] == before[shard_id]
    files = directory_digest(root)
    replay = ensemble.forget(victims)
    assert not replay.changed
    assert directory_digest(root) == files
    for shard_id in ensemble.shard_ids:
        state = load_state(ensemble.model_path(shard_id).read_bytes())
        assert weights_digest(state) == after[shard_id]["weights_hash"]

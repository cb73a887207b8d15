"""Training the stale shards, evaluating, and gating (real great-expectations)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.workflow.conftest import register_unrequested, request, shard_records
from unlearn_ops.serving.gates import summarise_failures
from unlearn_ops.serving.versions import CHAMPION
from unlearn_ops.workflow.batch import apply_batch
from unlearn_ops.workflow.retraining import evaluate, run_gates, stale_shards, train_one_shard
from unlearn_ops.workflow.workspace import Workspace


def test_only_the_shards_whose_data_changed_are_stale_and_retrain_from_their_slice(
    trained: Workspace,
) -> None:
    assert stale_shards(trained) == []
    plan = apply_batch(trained, [request("r1", shard_records(trained, 2, 1))])
    assert stale_shards(trained) == [2]
    before = trained.ensemble.served_model_info(2)
    result = train_one_shard(trained, 2)
    assert result.shard_id == 2
    assert result.first_stage == plan.shards[0].first_stage
    assert result.stages == tuple(range(result.first_stage, 3))
    assert result.weights_hash != (before or {}).get("weights_hash")
    assert result.seconds > 0
    assert stale_shards(trained) == []
    # A shard that is not stale trains no stage.
    assert train_one_shard(trained, 0).stages == ()


def test_evaluation_writes_the_metrics_file(trained: Workspace) -> None:
    metrics = evaluate(trained)
    assert json.loads(trained.metrics_path.read_text()) == metrics
    assert 0.3 < metrics["accuracy"] <= 1.0
    assert metrics["holdout_records"] == len(trained.ensemble.read_holdout())


def test_the_gates_judge_the_data_and_the_accuracy_against_the_champion(
    trained: Workspace,
) -> None:
    metrics = evaluate(trained)
    data, metric, fairness = run_gates(trained, metrics, champion_accuracy=None)
    assert (data.gate, data.passed, metric.gate, metric.passed) == ("data", True, "metric", True)
    assert (fairness.gate, fairness.passed) == ("fairness", True)
    # The champion is this very ensemble: record by record, nothing dropped.
    champion = register_unrequested(
        trained, "train", [data, metric, fairness], message="version 1", metrics=metrics
    )
    trained.registry().set_alias(CHAMPION, champion.version)
    _, same, same_fairness = run_gates(trained, metrics, champion_accuracy=metrics["accuracy"])
    assert same.passed
    assert same_fairness.passed
    # A candidate whose shard models lost their weights predicts one class for everything:
    # far below the champion, on the same held-out records, and the metric gate says so.
    for shard_id in trained.ensemble.shard_ids:
        path = trained.ensemble.model_path(shard_id)
        state = torch.load(path, weights_only=True)
        torch.save({k: torch.zeros_like(v) for k, v in state.items()}, path)
    reopened = trained.reopen()  # the ensemble keeps loaded models: read the new files
    _, worse, unfair = run_gates(reopened, metrics, champion_accuracy=metrics["accuracy"])
    assert not worse.passed
    assert "champion" in summarise_failures([worse])
    # ... and the classes it no longer predicts are named by the fairness gate.
    assert not unfair.passed
    assert "recall drop" in summarise_failures([unfair])


def test_evaluation_runs_only_the_shards_whose_weights_it_has_not_seen(
    trained: Workspace,
) -> None:
    from unlearn_ops.workflow.held_out_outputs import held_out_outputs

    ensemble = trained.ensemble
    first = evaluate(trained)
    # Exactly the figure of the ensemble's own evaluation (issue 15: identical metrics).
    assert first["accuracy"] == ensemble.evaluate()
    assert held_out_outputs(trained).computed == ()  # every shard cached now
    cache = trained.root / ".unlearn-ops" / "held-out"
    (folder,) = cache.iterdir()
    before = {p.name for p in folder.iterdir()}
    assert len(before) == len(ensemble.shard_ids)

    apply_batch(trained, [request("r1", shard_records(trained, 2, 3))])
    train_one_shard(trained, 2)
    outputs = held_out_outputs(trained)
    assert outputs.computed == (2,)
    assert evaluate(trained)["accuracy"] == ensemble.evaluate()
    after = {p.name for p in folder.iterdir()}
    # The retrained shard's old outputs are gone; the others are the same entries.
    assert len(after) == len(ensemble.shard_ids)
    assert len(before - after) == len(after - before) == 1
    features = outputs.holdout[list(ensemble.columns().feature_columns)].to_numpy()
    assert (outputs.predictions == ensemble.predict(features)).all()


def test_a_changed_held_out_table_is_evaluated_afresh_and_its_old_outputs_deleted(
    trained: Workspace,
) -> None:
    from unlearn_ops.workflow.held_out_outputs import held_out_outputs

    evaluate(trained)
    cache = trained.root / ".unlearn-ops" / "held-out"
    (old,) = cache.iterdir()
    holdout_id = str(trained.ensemble.read_holdout()["record_id"].iloc[0])
    apply_batch(trained, [request("r-held-out", [holdout_id])])  # a held-out record goes
    outputs = held_out_outputs(trained)
    assert outputs.computed == tuple(trained.ensemble.shard_ids)
    assert [p.name for p in cache.iterdir()] != [old.name]
    assert not old.exists()
    assert evaluate(trained)["accuracy"] == trained.ensemble.evaluate()


def test_the_champions_held_out_predictions_come_from_the_cache_not_its_loaded_model(
    trained: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from unlearn_ops.workflow.held_out_outputs import held_out_outputs, keep_served_only

    metrics = evaluate(trained)
    registry = trained.registry()
    champion = register_unrequested(trained, "train", run_gates(trained, metrics, None))
    registry.set_alias(CHAMPION, champion.version)
    served = registry.served_shards(CHAMPION)
    assert served is not None
    # A forget retrains shard 2: the champion's shard 2 is no longer the workspace's.
    apply_batch(trained, [request("r1", shard_records(trained, 2, 3))])
    train_one_shard(trained, 2)
    candidate = evaluate(trained)
    outputs = held_out_outputs(trained, served)
    assert outputs.computed == ()  # evaluate ran shard 2 and kept the champion's entries
    features = outputs.holdout[list(trained.ensemble.columns().feature_columns)]
    loaded = registry.load_pyfunc(CHAMPION).predict(features)
    assert outputs.champion_scores is not None
    # Bit for bit what the registered model serves.
    assert np.array_equal(outputs.champion_predictions, loaded["prediction"].to_numpy())
    assert np.array_equal(outputs.champion_scores, loaded.drop(columns="prediction").to_numpy())
    assert not np.array_equal(outputs.champion_scores, outputs.scores)

    def not_loaded(alias_or_version: str = CHAMPION) -> None:
        raise AssertionError("the champion's model was loaded")

    with monkeypatch.context() as patched:
        patched.setattr(registry, "load_pyfunc", not_loaded)
        from_cache = run_gates(trained, candidate, champion_accuracy=metrics["accuracy"])
    folder = next((trained.root / ".unlearn-ops" / "held-out").iterdir())
    shards = len(trained.ensemble.shard_ids)
    assert len(list(folder.iterdir())) == shards + 1  # and the champion's shard 2
    # Promoting the candidate drops the previous champion's entries (its shard 2 held r1).
    keep_served_only(trained)
    assert len(list(folder.iterdir())) == shards
    # Without the champion's entries (here: after that; or a rollback, a cleared cache)
    # its model is loaded, and the gates say the same.
    loaded_calls = []
    load = registry.load_pyfunc

    def counted(alias_or_version: str = CHAMPION) -> object:
        loaded_calls.append(alias_or_version)
        return load(alias_or_version)

    monkeypatch.setattr(registry, "load_pyfunc", counted)
    from_model = run_gates(trained, candidate, champion_accuracy=metrics["accuracy"])
    assert loaded_calls == [CHAMPION]
    assert from_cache == from_model


def test_dropping_entries_at_promotion_never_fails_the_promotion(trained: Workspace) -> None:
    from unlearn_ops.workflow.held_out_outputs import keep_served_only

    cache = trained.root / ".unlearn-ops" / "held-out"
    (folder,) = cache.iterdir()
    entries = sorted(p.name for p in folder.iterdir())
    trained.ensemble.model_path(1).unlink()  # a shard model gone: nothing can be named
    keep_served_only(trained)
    assert sorted(p.name for p in folder.iterdir()) == entries  # left for the next evaluation
    shutil.rmtree(cache)
    keep_served_only(trained)  # nothing cached: nothing to do
    assert not cache.exists()

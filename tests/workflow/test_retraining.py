"""Training the stale shards, evaluating, and gating (real great-expectations)."""

from __future__ import annotations

import json

from tests.workflow.conftest import request, shard_records
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
    data, metric = run_gates(trained, metrics, champion_accuracy=None)
    assert (data.gate, data.passed, metric.gate, metric.passed) == ("data", True, "metric", True)
    # Far below the champion (the floor allows a drop of 0.5 at most): the metric gate fails.
    _, worse = run_gates(trained, metrics, champion_accuracy=metrics["accuracy"] + 0.6)
    assert not worse.passed

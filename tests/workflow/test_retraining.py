"""Training the stale shards, evaluating, and gating (real great-expectations)."""

from __future__ import annotations

import json

import torch

from tests.workflow.conftest import request, shard_records
from unlearn_ops.serving.gates import summarise_failures
from unlearn_ops.serving.versions import CHAMPION
from unlearn_ops.workflow.batch import apply_batch
from unlearn_ops.workflow.registration import register_version
from unlearn_ops.workflow.retraining import evaluate, run_gates, stale_shards, train_one_shard
from unlearn_ops.workflow.revisions import record_revision
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
    revision = record_revision(trained, "version 1", [])
    champion = register_version(
        trained,
        kind="train",
        requests=[],
        trained=[],
        revision=revision,
        gates=[data, metric, fairness],
        metrics=metrics,
        timings={},
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

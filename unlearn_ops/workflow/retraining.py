"""Training the stale shards of a workspace, evaluating the ensemble and gating it.

Each shard trains (or resumes from its longest cached prefix of stage checkpoints) in a
call of its own, so that flows run shards in parallel; the gates then judge the data (no
forgotten id in any shard, the schema), the held-out accuracy against the champion's, and
its fairness (per-class recall, per-group accuracy) against the champion's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

    from unlearn_ops.serving.gates import GateResult, GateRunner
    from unlearn_ops.serving.versions import ServedShards
    from unlearn_ops.sisa.training import ShardModel
    from unlearn_ops.workflow.held_out_outputs import HeldOutOutputs

__all__ = ["ShardTrained", "evaluate", "run_gates", "stale_shards", "train_one_shard"]


@dataclass(frozen=True)
class ShardTrained:
    """What training one shard did (a small, serialisable summary)."""

    shard_id: int
    first_stage: int
    stages: tuple[int, ...]
    weights_hash: str
    seconds: float

    @classmethod
    def of(cls, model: ShardModel) -> ShardTrained:
        """The summary of a trained shard."""
        return cls(
            model.shard_id,
            model.resumed_from_stage,
            tuple(model.stages_trained),
            model.weights_hash,
            model.seconds,
        )


def stale_shards(workspace: Workspace) -> list[int]:
    """Shards whose served model does not match their data: what must train now."""
    return workspace.ensemble.stale_shards()


def train_one_shard(workspace: Workspace, shard_id: int) -> ShardTrained:
    """Train (or resume) one shard; a Prefect task each, so shards run in parallel."""
    from unlearn_ops.sisa.progress import report_stage

    return ShardTrained.of(workspace.ensemble.train_shard(shard_id, progress=report_stage))


def evaluate(workspace: Workspace) -> dict[str, float]:
    """Held-out accuracy of the served ensemble; written to metrics.json.

    Only shards whose weights have no cached held-out outputs run (issue 15: a forget
    evaluates the shards it retrained); see :mod:`unlearn_ops.workflow.held_out_outputs`.
    """
    import numpy as np

    from unlearn_ops.workflow.held_out_outputs import held_out_outputs

    outputs = held_out_outputs(workspace, _served_champion(workspace))
    labels = outputs.holdout[workspace.ensemble.columns().label_column].to_numpy()
    metrics = {
        "accuracy": float(np.mean(outputs.predictions == labels)),
        "holdout_records": float(len(outputs.holdout)),
    }
    workspace.write_json(workspace.metrics_path, metrics)
    return metrics


def _served_champion(workspace: Workspace) -> ServedShards | None:
    """The serving version's shards by content (None without a champion or a manifest)."""
    from unlearn_ops.serving.versions import CHAMPION

    registry = workspace.registry()
    if registry.alias_version(CHAMPION) is None:
        return None
    return registry.served_shards(CHAMPION)


def _champion_predictor(
    workspace: Workspace, outputs: HeldOutOutputs
) -> Callable[[pd.DataFrame], Any]:
    """The champion's predictions: from the cache when all its shards' entries are there,
    else from its model, loaded from the registry."""
    from unlearn_ops.serving.versions import CHAMPION

    cached = outputs.champion_predictions
    if cached is not None:
        return lambda frame: cached
    served = workspace.registry().load_pyfunc(CHAMPION)
    return lambda frame: served.predict(frame)["prediction"]


def run_gates(
    workspace: Workspace,
    metrics: dict[str, float],
    champion_accuracy: float | None,
    gate_runner: GateRunner | None = None,
) -> list[GateResult]:
    """The data gate (no forgotten id in any shard, schema), the metric gate, the fairness
    gate (per class and group, against the champion) unless `gates.fairness` is off, and the
    privacy gate of a forget when `gates.privacy` is on.

    With a champion (`champion_accuracy` not None), its model is loaded from the registry
    and predicts the same held-out records as the candidate, so that the metric gate
    compares the two record by record (issue 11, finding 4); `metrics` is not read (the
    accuracy is recomputed per record). `gate_runner` defaults to great-expectations.
    """
    from unlearn_ops.adapters.gx.gates import GxGateRunner
    from unlearn_ops.privacy.fairness import collect_fairness_evidence, read_source_classes
    from unlearn_ops.serving.gates import DataGateEvidence, held_out_correctness
    from unlearn_ops.workflow.held_out_outputs import held_out_outputs

    runner = GxGateRunner() if gate_runner is None else gate_runner
    ensemble = workspace.ensemble
    columns = ensemble.columns()
    tables = {s: ensemble.read_shard(s) for s in ensemble.shard_ids}
    data = runner.run_data_gate(
        DataGateEvidence(
            tables,
            id_column=columns.id_column,
            label_column=columns.label_column,
            feature_columns=columns.feature_columns,
            num_classes=columns.num_classes,
            forgotten_hashes=ensemble.forgotten_hashes(),
            hash_record_id=lambda r: workspace.settings.hash_record_id(canonical_id(r)),
        )
    )
    # Both versions' held-out predictions, from the cache `evaluate` filled (issue 15); the
    # champion's model is loaded only when its shards' outputs are not all there.
    outputs = held_out_outputs(
        workspace, None if champion_accuracy is None else _served_champion(workspace)
    )
    holdout = outputs.holdout
    predict_champion = None
    if champion_accuracy is not None:
        predict_champion = _champion_predictor(workspace, outputs)
    correctness = held_out_correctness(
        holdout,
        id_column=columns.id_column,
        label_column=columns.label_column,
        feature_columns=columns.feature_columns,
        predict_candidate=lambda frame: outputs.predictions,
        predict_champion=predict_champion,
    )
    metric = runner.run_metric_gate(correctness, workspace.params.gates)
    results = [data, metric]
    if workspace.params.gates.fairness.enabled:
        evidence = collect_fairness_evidence(
            holdout,
            correctness,
            label_column=columns.label_column,
            num_classes=columns.num_classes,
            training_labels=[int(v) for t in tables.values() for v in t[columns.label_column]],
            sensitive_column=workspace.params.dataset.sensitive_column,
            source_classes=lambda: read_source_classes(workspace.params, workspace.root),
        )
        results.append(runner.run_fairness_gate(evidence, workspace.params.gates))
    if workspace.params.gates.privacy:
        from unlearn_ops.workflow.membership_audit import privacy_gate

        results += [g for g in [privacy_gate(workspace)] if g is not None]
    return results

"""The release-pair benchmark: what the versions around a deletion leak, and what each switch costs.

For a workload (dataset x model) it trains the SISA ensemble once (the parent) and, on
fresh copies, forgets one random record per draw and one batch of `batch` records. On
those pairs it measures (issue 12, items 2 and 3):

- the difference attack (:mod:`unlearn_ops.privacy.pair`): AUC of the deleted records
  against retained training records, pooled over the one-record draws, and on the batch;
- the reconstruction (:mod:`unlearn_ops.privacy.reconstruction`) on a ridge probe of each
  affected shard (the linear part a release would expose; the MLP's own layers are "not
  assessed"), public records = the held-out set;
- for each mitigation, both risks again and the held-out accuracy it costs (points of
  the child version's accuracy), side by side.

Weight noise is drawn fresh for parent and child (:func:`noise_state`); DP-SGD retrains
the parent and the children with `training.dp` on, its noise keyed by a fresh secret and
each stage's content (:mod:`unlearn_ops.sisa.dp`). torch is imported inside functions.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import SecretStr

from unlearn_ops.params import Params, ReleaseParams
from unlearn_ops.privacy.mitigations import fresh_secret, limit_outputs, noise_state
from unlearn_ops.privacy.pair import difference_attack, score_attack
from unlearn_ops.privacy.reconstruction import NOT_ASSESSED, assess_reconstruction, fit_ridge
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.datasets import BUILTIN_DATASETS
from unlearn_ops.sisa.ensemble import SisaEnsemble

__all__ = ["MITIGATIONS", "PAIR_WORKLOADS", "pair_risk_markdown", "run_pair_risk"]

PAIR_WORKLOADS = ("digits-mlp", "mnist-mlp")
"""The workloads `make bench` measures the release-pair risk on (issue 12)."""

RIDGE = 1.0
# One-record forgets per configuration: the deleted records are the attack's positives.
# 60 of them give an AUC interval of about +-0.07 near 0.5 on graded scores, much narrower
# on label-only ones (most scores tie at 0): enough to tell 0.50 from the 0.55 target there.
DRAWS = 60
MITIGATIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("none", {}),
    ("outputs: label", {"outputs": "label"}),
    ("outputs: top_k=1", {"outputs": "top_k", "top_k": 1}),
    ("outputs: rounded to 1 decimal", {"outputs": "rounded", "decimals": 1}),
    ("weight noise sigma=0.003", {"weight_noise": 0.003}),
    ("weight noise sigma=0.01", {"weight_noise": 0.01}),
    ("weight noise sigma=0.03", {"weight_noise": 0.03}),
    ("min batch k (one release of k records)", {"min_batch": -1}),
    ("outputs: label + weight noise sigma=0.003", {"outputs": "label", "weight_noise": 0.003}),
    ("outputs: label + weight noise sigma=0.01", {"outputs": "label", "weight_noise": 0.01}),
    ("DP-SGD epsilon=8 (fresh noise per retrain)", {"dp": 8.0}),
)


def _outputs(ensemble: SisaEnsemble, features: np.ndarray, sigma: float, tag: str) -> np.ndarray:
    """The ensemble's probabilities, with fresh noise of `sigma` on every shard's weights."""
    if sigma == 0:
        return ensemble.predict_proba(features)
    import torch

    from unlearn_ops.sisa.aggregation import aggregate
    from unlearn_ops.sisa.models import build_model
    from unlearn_ops.sisa.training import load_state

    columns = ensemble.columns()
    inputs = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    secret = fresh_secret()
    outputs = []
    for shard_id in ensemble.shard_ids:
        state = load_state(ensemble.model_path(shard_id).read_bytes())
        module = build_model(
            ensemble.params.model, len(columns.feature_columns), columns.num_classes
        )
        module.load_state_dict(
            noise_state(state, sigma, version=f"{tag}:{shard_id}", secret=secret)
        )
        module.eval()
        with torch.no_grad():
            outputs.append(torch.softmax(module(inputs), dim=1).numpy())
    return aggregate(np.stack(outputs), ensemble.params.sisa.aggregation)


def _ridge_risk(
    parent: SisaEnsemble, deleted: Sequence[object], holdout: pd.DataFrame, sigma: float
) -> list[tuple[float, float, float]]:
    """(excess cosine, ranked first, label recovered) of the ridge reconstruction per shard."""
    columns = parent.columns()
    features = list(columns.feature_columns)
    # Python's own hash of strings changes per process: a stable digest seeds the draws.
    digest = hashlib.sha256(",".join(sorted(map(str, deleted))).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    keys = {str(r) for r in deleted}
    scores = []
    for shard_id in parent.shard_ids:
        table = parent.read_shard(shard_id)
        gone = table[columns.id_column].astype(str).isin(keys).to_numpy()
        if not gone.any():
            continue
        x = table[features].to_numpy(np.float64)
        y = table[columns.label_column].to_numpy()
        before = fit_ridge(x, y, columns.num_classes, RIDGE)
        after = fit_ridge(x[~gone], y[~gone], columns.num_classes, RIDGE)
        if sigma:  # fresh noise per release: independent draws for parent and child
            before = before + rng.normal(0, sigma, before.shape)
            after = after + rng.normal(0, sigma, after.shape)
        result = assess_reconstruction(
            before,
            after,
            public_features=holdout[features].to_numpy(np.float64),
            num_train=len(table),
            ridge=RIDGE,
            deleted_features=x[gone],
            deleted_labels=y[gone],
        )
        scores.append(
            (result.excess_cosine, float(result.rank == 1), float(result.label_recovered))
        )
    return scores


def _pair(
    root: Path, params: Params, settings: Settings, deleted: Sequence[object], scratch: Path
) -> SisaEnsemble:
    copy = scratch / f"child-{len(list(scratch.iterdir()))}"
    shutil.copytree(root, copy)
    child = SisaEnsemble(copy, params, settings)
    child.forget(list(deleted))
    return child


def _measure(
    params: Params,
    dataset: Any,
    settings: Settings,
    sizes: tuple[int, int, int],
    configs: Sequence[tuple[float, ReleaseParams]],
) -> list[dict[str, Any]]:
    """Train the parent and the children once; measure every (sigma, release) on them."""
    draws, batch, seed = sizes
    with tempfile.TemporaryDirectory(prefix="unlearn-pair-") as folder:
        scratch = Path(folder)
        parent = SisaEnsemble(scratch / "parent", params, settings)
        parent.fit(dataset)
        columns = parent.columns()
        table = pd.concat([parent.read_shard(s) for s in parent.shard_ids], ignore_index=True)
        holdout = parent.read_holdout()
        x = table[list(columns.feature_columns)].to_numpy(np.float32)
        y = table[columns.label_column].to_numpy()
        held_x = holdout[list(columns.feature_columns)].to_numpy(np.float32)
        held_y = holdout[columns.label_column].to_numpy()
        ids = table[columns.id_column].astype(str).to_numpy()
        rng = random.Random(seed)  # noqa: S311 - a benchmark draw, not a secret
        pool = list(table[columns.id_column])
        requests = [rng.sample(pool, 1) for _ in range(draws)] + [rng.sample(pool, batch)]
        children = [_pair(scratch / "parent", params, settings, r, scratch) for r in requests]
        rows = np.arange(len(y))
        measured = []
        # The ridge probe reads weights, not served outputs: one draw of it per noise level
        # and request serves every output switch (the same release, differently served).
        ridge: dict[tuple[int, float], list[tuple[float, float, float]]] = {}

        def ridge_risk(draw: int, chosen: Sequence[object], sigma: float) -> Any:
            if (draw, sigma) not in ridge:
                ridge[draw, sigma] = _ridge_risk(parent, chosen, holdout, sigma)
            return ridge[draw, sigma]

        for sigma, release in configs:
            before = limit_outputs(_outputs(parent, x, sigma, "parent"), release)
            positives, negatives, accuracies, excess = [], [], [], []
            for draw, (chosen, child) in enumerate(zip(requests, children, strict=True)):
                after = limit_outputs(_outputs(child, x, sigma, f"child-{draw}"), release)
                deleted = np.isin(ids, [str(c) for c in chosen])
                if draw == draws:  # the batch
                    batch_attack = difference_attack(before, after, y, deleted, rounds=200)
                    batch_excess = ridge_risk(draw, chosen, sigma)
                    continue
                scores = before[rows, y] - after[rows, y]
                positives.append(scores[deleted])
                negatives.append(scores[~deleted])
                served = _outputs(child, held_x, sigma, f"accuracy-{draw}")
                accuracies.append(float((served.argmax(axis=1) == held_y).mean()))
                excess += ridge_risk(draw, chosen, sigma)
            pooled = score_attack(
                "true_label", np.concatenate(positives), np.concatenate(negatives), rounds=200
            )
            cosines = np.array([e for e, _, _ in excess])
            measured.append(
                {
                    "single_auc": pooled.auc,
                    "single_auc_ci": list(pooled.auc_ci),
                    "single_tpr": pooled.tpr_at_1pct_fpr,
                    "single_positives": int(sum(len(p) for p in positives)),
                    "batch_auc": batch_attack["true_label"].auc,
                    "batch_auc_ci": list(batch_attack["true_label"].auc_ci),
                    "single_excess": float(np.median(cosines)),
                    "single_excess_ci": _median_interval(cosines, seed),
                    "single_rank1": float(np.mean([r for _, r, _ in excess])),
                    "single_label": float(np.mean([k for _, _, k in excess])),
                    "batch_excess": float(np.median([e for e, _, _ in batch_excess])),
                    "accuracy": float(np.mean(accuracies)),
                }
            )
    return measured


def _median_interval(values: np.ndarray, seed: int, rounds: int = 1000) -> list[float]:
    """95% percentile-bootstrap interval of the median of `values` (seeded)."""
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, (rounds, len(values)), replace=True), axis=1)
    return [float(np.quantile(medians, 0.025)), float(np.quantile(medians, 0.975))]


def _release(switch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in switch.items() if k in ("outputs", "top_k", "decimals")}


def _row(
    name: str, measured: dict[str, Any], baseline: dict[str, Any], batch: int
) -> dict[str, Any]:
    return {
        "mitigation": name,
        **measured,
        "accuracy_cost_points": 100 * (baseline["accuracy"] - measured["accuracy"]),
        "batch": batch,
    }


def run_pair_risk(
    workloads: Sequence[str] = PAIR_WORKLOADS,
    *,
    draws: int = DRAWS,
    dp_draws: int = 10,
    batch: int = 20,
    seed: int = 0,
    mitigations: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Pair risk and the mitigations' trade-off, per workload.

    Args:
        workloads: names from :data:`unlearn_ops.bench.workloads.WORKLOADS`.
        draws: one-record forgets per configuration (their scores are pooled).
        dp_draws: one-record forgets of the DP-SGD row (DP-SGD's per-sample gradients
            make each retraining slow).
        batch: records of the batch forget (and the `min batch` mitigation's k).
        seed: seeds the draws and the training.
        mitigations: names from :data:`MITIGATIONS` to run (all by default).

    Returns:
        Per workload, one row per mitigation: difference AUC (one record, pooled; and
        the batch), median excess cosine of the ridge reconstruction, held-out accuracy
        and its cost in points against no mitigation.
    """
    from unlearn_ops.bench.workloads import WORKLOADS

    settings = Settings(device="cpu", torch_threads=1, max_parallel_shards=1)
    chosen = {w.name: w for w in WORKLOADS}
    results: dict[str, Any] = {}
    for name in workloads:
        workload = chosen[name]
        dataset = BUILTIN_DATASETS[workload.dataset]()
        params = Params.from_mapping({"seed": seed, **workload.params})
        selected = [
            (label, switch)
            for label, switch in MITIGATIONS
            if mitigations is None or label in mitigations or label == "none"
        ]
        plain = [(k, s) for k, s in selected if "dp" not in s and "min_batch" not in s]
        configs = [
            (float(switch.get("weight_noise", 0.0)), ReleaseParams(**_release(switch)))
            for _, switch in plain
        ]
        sizes = (draws, batch, seed)
        found = dict(
            zip(
                [label for label, _ in plain],
                _measure(params, dataset, settings, sizes, configs),
                strict=True,
            )
        )
        for label, switch in selected:
            if "dp" in switch:
                dp = params.training.dp.model_copy(
                    update={"enabled": True, "epsilon": switch["dp"]}
                )
                run = params.model_copy(
                    update={"training": params.training.model_copy(update={"dp": dp})}
                )
                dp_sizes = (min(draws, dp_draws), batch, seed)
                # The operator's secret the DP noise is drawn from (never released).
                keyed = settings.model_copy(update={"dp_noise_key": SecretStr(fresh_secret())})
                (result,) = _measure(run, dataset, keyed, dp_sizes, [(0.0, ReleaseParams())])
                # The ridge probe is closed form, not trained by DP-SGD: nothing to say.
                found[label] = {
                    **result,
                    "single_excess": NOT_ASSESSED,
                    "single_excess_ci": NOT_ASSESSED,
                    "single_rank1": NOT_ASSESSED,
                    "single_label": NOT_ASSESSED,
                    "batch_excess": NOT_ASSESSED,
                }
            elif "min_batch" in switch:
                # One release of k records: each deleted record's risk is the batch's.
                none = found["none"]
                found[label] = {
                    **none,
                    "single_auc": none["batch_auc"],
                    "single_auc_ci": none["batch_auc_ci"],
                    "single_tpr": float("nan"),
                    "single_positives": batch,
                    "single_excess": none["batch_excess"],
                    "single_excess_ci": "-",
                    "single_rank1": float("nan"),
                    "single_label": float("nan"),
                }
        rows = [_row(label, found[label], found["none"], batch) for label, _ in selected]
        results[name] = {"description": workload.description, "rows": rows}
    return results


def _number(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:.3f}"


def _interval(value: Any) -> str:
    if isinstance(value, str):
        return value
    return f"[{value[0]:.3f}, {value[1]:.3f}]"


def pair_risk_markdown(results: dict[str, Any]) -> str:
    """The trade-off table: per workload and mitigation, both risks and the accuracy cost."""
    lines = [
        "| workload | mitigation | difference AUC, 1 record [95% CI] (positives) | TPR@1%FPR | "
        "difference AUC, batch | excess cosine (ridge), 1 record, median [95% CI] | "
        "ranked first | label recovered | excess cosine, batch | "
        "held-out accuracy | cost (points) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for row in result["rows"]:
            low, high = row["single_auc_ci"]
            lines.append(
                f"| {name} | {row['mitigation']} | {row['single_auc']:.3f} [{low:.3f}, {high:.3f}]"
                f" ({row.get('single_positives', '?')})"
                f" | {_number(row['single_tpr'])} | {row['batch_auc']:.3f} (k={row['batch']})"
                f" | {_number(row['single_excess'])} {_interval(row.get('single_excess_ci', '-'))}"
                f" | {_number(row['single_rank1'])} | {_number(row.get('single_label', '-'))}"
                f" | {_number(row['batch_excess'])}"
                f" | {row['accuracy']:.4f} | {row['accuracy_cost_points']:+.2f} |"
            )
    return "\n".join(lines)

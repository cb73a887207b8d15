"""The difference attack on a pair of released versions (Chen et al., CCS 2021).

An attacker who can query the version before a deletion (the parent) and the one after
it (the child) scores each candidate record x by how much the two versions' outputs
differ on it. Exact retraining does not help here: the child is exactly a model that
never saw the deleted records, and the parent is exactly one that did, so the deleted
records are the ones whose outputs move most. Two scores, each on both versions' class
probabilities as served:

- `true_label`: p_parent(y | x) - p_child(y | x), the confidence the deletion took away;
- `l2`: ||p_parent(x) - p_child(x)||_2, the whole posterior's move (needs no label).

Each is reported as the AUC of deleted records against other records (retained training
records, or held-out records), TPR at 1% FPR, and bootstrap confidence intervals. A
deletion of one record gives one positive: its AUC is the record's rank, and its
interval comes only from resampling the negatives; pool several pairs for a tighter one.

Pure numpy: the caller computes the outputs (served pyfunc models, an ensemble).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from unlearn_ops.errors import ConfigError
from unlearn_ops.privacy.statistics import bootstrap_interval, roc_auc, tpr_at_fpr

__all__ = [
    "SCORES",
    "AttackResult",
    "difference_attack",
    "difference_scores",
    "score_attack",
    "summarise",
]

SCORES = ("true_label", "l2")
"""The difference attack's two statistics (see the module docstring)."""

LOW_FPR = 0.01


@dataclass(frozen=True)
class AttackResult:
    """How well one score tells positives (deleted records) from negatives.

    Attributes:
        score: the statistic's name.
        auc: area under the ROC curve (0.5: no better than chance).
        auc_ci: bootstrap 95% interval of the AUC.
        tpr_at_1pct_fpr: true-positive rate at 1% false-positive rate.
        tpr_ci: bootstrap 95% interval of that TPR.
        positives: number of deleted records scored.
        negatives: number of other records scored.
    """

    score: str
    auc: float
    auc_ci: tuple[float, float]
    tpr_at_1pct_fpr: float
    tpr_ci: tuple[float, float]
    positives: int
    negatives: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        values = asdict(self)
        values["auc_ci"] = list(self.auc_ci)
        values["tpr_ci"] = list(self.tpr_ci)
        return values


def _check(parent: np.ndarray, child: np.ndarray, labels: np.ndarray) -> None:
    problems = []
    if parent.ndim != 2 or parent.shape != child.shape:
        problems.append(
            f"parent and child outputs must be (records, classes) of one shape, got "
            f"{parent.shape} and {child.shape}"
        )
    elif labels.shape != (len(parent),):
        problems.append(f"labels must be one per record ({len(parent)}), got {labels.shape}")
    elif len(labels) and (labels.min() < 0 or labels.max() >= parent.shape[1]):
        problems.append(f"labels must lie in [0, {parent.shape[1]})")
    if problems:
        raise ConfigError("the difference attack", problems)


def difference_scores(
    parent: np.ndarray, child: np.ndarray, labels: np.ndarray
) -> dict[str, np.ndarray]:
    """The attack's statistics for each record, from both versions' class probabilities.

    Args:
        parent: (records, classes) probabilities of the version before the deletion.
        child: the same records' probabilities from the version after it.
        labels: each record's true class.

    Returns:
        `true_label` and `l2`, one value per record (higher: more likely deleted).

    Raises:
        ConfigError: the shapes do not match or a label is out of range.
    """
    parent = np.asarray(parent, dtype=np.float64)
    child = np.asarray(child, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    _check(parent, child, labels)
    rows = np.arange(len(labels))
    return {
        "true_label": parent[rows, labels] - child[rows, labels],
        "l2": np.linalg.norm(parent - child, axis=1),
    }


def score_attack(
    name: str,
    positives: np.ndarray,
    negatives: np.ndarray,
    *,
    rounds: int = 1000,
    seed: int = 0,
) -> AttackResult:
    """AUC and TPR at 1% FPR of one score, with bootstrap intervals.

    Raises:
        ConfigError: there are no positives or no negatives.
    """
    positives = np.asarray(positives, dtype=np.float64)
    negatives = np.asarray(negatives, dtype=np.float64)
    if not len(positives) or not len(negatives):
        raise ConfigError(
            "the difference attack",
            [f"needs deleted and other records, got {len(positives)} and {len(negatives)}"],
        )

    def tpr(pos: np.ndarray, neg: np.ndarray) -> float:
        return tpr_at_fpr(pos, neg, LOW_FPR)

    area = bootstrap_interval(roc_auc, positives, negatives, resamples=rounds, seed=seed)
    rate = bootstrap_interval(tpr, positives, negatives, resamples=rounds, seed=seed)
    return AttackResult(
        score=name,
        auc=area.value,
        auc_ci=(area.low, area.high),
        tpr_at_1pct_fpr=rate.value,
        tpr_ci=(rate.low, rate.high),
        positives=len(positives),
        negatives=len(negatives),
    )


def difference_attack(
    parent: np.ndarray,
    child: np.ndarray,
    labels: np.ndarray,
    deleted: np.ndarray,
    *,
    others: np.ndarray | None = None,
    rounds: int = 1000,
    seed: int = 0,
) -> dict[str, AttackResult]:
    """The difference attack: each score's power to single out the deleted records.

    Args:
        parent: probabilities of the version before the deletion, one row per record.
        child: probabilities of the version after it, the same rows.
        labels: true class of each row.
        deleted: boolean mask of the rows that were deleted (the positives).
        others: boolean mask of the rows to compare against (the negatives); every row
            not deleted by default. Pass retained training rows or held-out rows.
        rounds: bootstrap resamples.
        seed: bootstrap seed (the result is deterministic).

    Returns:
        An :class:`AttackResult` per score in :data:`SCORES`.
    """
    scores = difference_scores(parent, child, labels)
    deleted = np.asarray(deleted, dtype=bool)
    others = ~deleted if others is None else np.asarray(others, dtype=bool) & ~deleted
    return {
        name: score_attack(name, values[deleted], values[others], rounds=rounds, seed=seed)
        for name, values in scores.items()
    }


def summarise(results: Mapping[str, AttackResult]) -> dict[str, Any]:
    """The results as plain values, keyed by score."""
    return {name: result.to_dict() for name, result in results.items()}

"""How well a model forgot, against retraining: SalUn's MIA efficacy and the NeurIPS 2023 score F.

Pure numpy over ``phi``, the logit-scaled confidence of the true label
(:func:`unlearn_ops.privacy.confidence.logit_confidence`).

* **MIA efficacy** (Fan et al., SalUn, ICLR 2024, following Jia et al. NeurIPS 2023): a
  confidence attack is fitted on retained records (members) against test records
  (non-members); the efficacy is the share of forgotten records it calls non-members.
  Our attack is the one-feature version: the threshold on ``phi`` with the best balanced
  accuracy (their SVC on one confidence feature is a threshold too).
* **Forgetting quality F** (the NeurIPS 2023 machine unlearning challenge,
  google-deepmind/unlearning_evaluation; Triantafillou et al., arXiv 2406.09073): per
  forgotten record, ``phi`` under N unlearned models and under N retrained models; every
  single threshold and every interval on ``phi`` is an attack with false-positive and
  false-negative rates, and
  ``eps = max over attacks of max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)``
  (attacks with exactly one rate 0 are skipped, both 0 is infinite, capped at 50; a sample
  whose spread is under 1% of the other's gets the cap). ``eps`` falls in buckets of width
  0.5 worth 1, 1/2, 1/4, ..., ``ceil(ln(N - 1))`` buckets, beyond them 0; F is the mean.
  The final score is ``F x retain-accuracy ratio x test-accuracy ratio`` (unlearned over
  retrained).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "EPSILON_CAP",
    "attack_threshold",
    "example_epsilon",
    "forgetting_quality",
    "mia_efficacy",
]

FloatArray = NDArray[np.float64]
EPSILON_CAP = 50.0


def attack_threshold(members: ArrayLike, nonmembers: ArrayLike) -> float:
    """The threshold on phi ("member when phi > t") with the best balanced accuracy."""
    pos = np.asarray(members, dtype=np.float64)
    neg = np.asarray(nonmembers, dtype=np.float64)
    candidates = np.concatenate([[-np.inf], np.unique(np.concatenate([pos, neg]))])
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    tpr = 1.0 - np.searchsorted(pos_sorted, candidates, side="right") / pos.size
    tnr = np.searchsorted(neg_sorted, candidates, side="right") / neg.size
    return float(candidates[int(np.argmax(tpr + tnr))])


def mia_efficacy(forgotten: ArrayLike, retained: ArrayLike, test: ArrayLike) -> float:
    """Share of forgotten records a retained-vs-test confidence attack calls non-members.

    Args:
        forgotten: phi of the forgotten records under the model.
        retained: phi of retained records (the attack's members).
        test: phi of test records (the attack's non-members).
    """
    threshold = attack_threshold(retained, test)
    return float(np.mean(np.asarray(forgotten, dtype=np.float64) <= threshold))


def _attack_epsilon(fpr: float, fnr: float, delta: float) -> float:
    if fpr == 0.0 and fnr == 0.0:
        return math.inf
    if fpr == 0.0 or fnr == 0.0:
        return 0.0  # skipped, as in the reference code
    values = []
    for a, b in ((fpr, fnr), (fnr, fpr)):
        if 1.0 - delta - a > 0.0:
            values.append(math.log(1.0 - delta - a) - math.log(b))
    return max(values) if values else math.inf


def example_epsilon(unlearned: ArrayLike, retrained: ArrayLike, delta: float = 1e-5) -> float:
    """The attacks' largest epsilon for one record: phi under N unlearned vs N retrained models.

    A positive is "unlearned". Attacks: one threshold in either direction, and an interval
    (inside or outside), over every observed value.
    """
    u = np.asarray(unlearned, dtype=np.float64)
    r = np.asarray(retrained, dtype=np.float64)
    su, sr = float(u.std()), float(r.std())
    if su < 0.01 * sr or sr < 0.01 * su:
        return EPSILON_CAP  # "peaky": one sample is a point mass beside the other
    points = np.concatenate([[-np.inf], np.unique(np.concatenate([u, r]))])
    best = 0.0
    for i, low in enumerate(points):
        for high in points[i:]:
            # positive when low < phi <= high (high = inf-free: the last point covers all).
            in_u = float(np.mean((u > low) & (u <= high)))
            in_r = float(np.mean((r > low) & (r <= high)))
            for tpr, fpr in ((in_u, in_r), (1.0 - in_u, 1.0 - in_r)):
                best = max(best, _attack_epsilon(fpr, 1.0 - tpr, delta))
                if best >= EPSILON_CAP:
                    return EPSILON_CAP
    return min(best, EPSILON_CAP)


def forgetting_quality(unlearned: ArrayLike, retrained: ArrayLike, delta: float = 1e-5) -> float:
    """F: the mean bucket score of every forgotten record's epsilon.

    Args:
        unlearned: phi of the forgotten records under N unlearned models, (N, records).
        retrained: the same under N retrained models, (N, records).
        delta: the delta of (epsilon, delta).

    Returns:
        F in [0, 1]; 1 means no attack tells the two apart on any record.
    """
    u = np.asarray(unlearned, dtype=np.float64)
    r = np.asarray(retrained, dtype=np.float64)
    if u.shape != r.shape or u.ndim != 2 or u.shape[0] < 2:
        raise ValueError(
            f"need two (N >= 2, records) arrays of one shape, got {u.shape}, {r.shape}"
        )
    buckets = max(1, math.ceil(math.log(u.shape[0] - 1))) if u.shape[0] > 2 else 1
    scores = []
    for record in range(u.shape[1]):
        index = int(example_epsilon(u[:, record], r[:, record], delta) // 0.5)
        scores.append(2.0**-index if index < buckets else 0.0)
    return float(np.mean(scores))

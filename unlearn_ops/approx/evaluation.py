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
    "record_scores",
]

FloatArray = NDArray[np.float64]
EPSILON_CAP = 50.0


def attack_threshold(members: ArrayLike, nonmembers: ArrayLike) -> float:
    """The decision threshold on phi of a class-balanced logistic regression, members vs not.

    A fitted logistic curve, not the empirical best split: the best split of two overlapping
    samples jumps between seeds, the fitted curve moves smoothly (SalUn fits a classifier).
    """
    pos = np.asarray(members, dtype=np.float64)
    neg = np.asarray(nonmembers, dtype=np.float64)
    x = np.concatenate([pos, neg])
    target = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    weight = np.concatenate([np.full(pos.size, 0.5 / pos.size), np.full(neg.size, 0.5 / neg.size)])
    center, scale = float(np.median(x)), float(np.std(x)) or 1.0
    z = np.clip((x - center) / scale, -10.0, 10.0)
    design = np.stack([np.ones_like(z), z], axis=1)
    beta = np.zeros(2)
    for _ in range(50):  # Newton's method with a small ridge: converges in a few steps
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        gradient = design.T @ (weight * (p - target)) + 1e-4 * beta
        hessian = (design * (weight * p * (1.0 - p))[:, None]).T @ design + 1e-4 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.abs(step).max()) < 1e-10:
            break
    if beta[1] <= 0.0:
        return math.inf  # members are no more confident: the attack calls no one a member
    return center + scale * float(-beta[0] / beta[1])


def mia_efficacy(forgotten: ArrayLike, retained: ArrayLike, test: ArrayLike) -> float:
    """Share of forgotten records a retained-vs-test confidence attack calls non-members.

    Args:
        forgotten: phi of the forgotten records under the model.
        retained: phi of retained records (the attack's members).
        test: phi of test records (the attack's non-members).
    """
    threshold = attack_threshold(retained, test)
    return float(np.mean(np.asarray(forgotten, dtype=np.float64) <= threshold))


def _attack_epsilons(fpr: FloatArray, fnr: FloatArray, delta: float) -> FloatArray:
    """Epsilon of every attack; 0 where exactly one rate is 0 (skipped, as the reference)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.log(np.where(1.0 - delta - fpr > 0, 1.0 - delta - fpr, np.nan)) - np.log(fnr)
        second = np.log(np.where(1.0 - delta - fnr > 0, 1.0 - delta - fnr, np.nan)) - np.log(fpr)
    both = np.fmax(first, second)
    both = np.where(np.isnan(both), np.inf, both)
    both = np.where((fpr == 0) ^ (fnr == 0), 0.0, both)
    return np.asarray(np.where((fpr == 0) & (fnr == 0), np.inf, both))


def example_epsilon(unlearned: ArrayLike, retrained: ArrayLike, delta: float = 1e-5) -> float:
    """The attacks' largest epsilon for one record: phi under N unlearned vs N retrained models.

    A positive is "unlearned". Attacks: every interval ``low < phi <= high`` between observed
    values and its complement (one threshold in either direction is an interval open at one
    end).
    """
    u = np.sort(np.asarray(unlearned, dtype=np.float64))
    r = np.sort(np.asarray(retrained, dtype=np.float64))
    su, sr = float(u.std()), float(r.std())
    if su < 0.01 * sr or sr < 0.01 * su:
        return EPSILON_CAP  # "peaky": one sample is a point mass beside the other
    points = np.concatenate([[-np.inf], np.unique(np.concatenate([u, r]))])
    below_u = np.searchsorted(u, points, side="right") / u.size
    below_r = np.searchsorted(r, points, side="right") / r.size
    # in_u[i, j]: share of unlearned with points[i] < phi <= points[j] (j >= i).
    in_u = np.triu(below_u[None, :] - below_u[:, None])
    in_r = np.triu(below_r[None, :] - below_r[:, None])
    upper = np.triu(np.ones_like(in_u, dtype=bool))
    inside = _attack_epsilons(in_r[upper], 1.0 - in_u[upper], delta)
    outside = _attack_epsilons(1.0 - in_r[upper], in_u[upper], delta)
    return float(min(max(float(inside.max()), float(outside.max()), 0.0), EPSILON_CAP))


def forgetting_quality(unlearned: ArrayLike, retrained: ArrayLike, delta: float = 1e-5) -> float:
    """F: the mean bucket score of every forgotten record's epsilon.

    Args:
        unlearned: phi of the forgotten records under N unlearned models, (N, records).
        retrained: the same under N retrained models, (N, records).
        delta: the delta of (epsilon, delta).

    Returns:
        F in [0, 1]; 1 means no attack tells the two apart on any record.
    """
    return float(np.mean(record_scores(unlearned, retrained, delta)))


def record_scores(unlearned: ArrayLike, retrained: ArrayLike, delta: float = 1e-5) -> FloatArray:
    """Each forgotten record's bucket score, whose mean is F (arguments as there).

    Two methods scored on the same records compare record by record: the paired differences'
    bootstrap says whether one F beats the other beyond the records drawn.
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
    return np.asarray(scores, dtype=np.float64)

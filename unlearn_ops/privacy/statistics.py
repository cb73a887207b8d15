"""Statistics shared by the privacy audits: AUC, TPR at low FPR, bootstrap intervals, flag counts.

Pure numpy and the standard library, so that the membership, release-pair and fairness
audits compute their numbers the same way. Conventions, written down once:

* A *score* is larger for "more likely a member" (or "more likely deleted").
* :func:`roc_auc` is the Mann-Whitney probability ``P(s+ > s-) + P(s+ = s-) / 2``.
* :func:`tpr_at_fpr` thresholds strictly above the negatives' empirical quantile, so the
  realised FPR never exceeds the asked one (with 100 negatives, FPR 0.1% means "above every
  negative"): a conservative reading, as Carlini et al. (S&P 2022, sec. IV) advise for low FPR.
* :func:`bootstrap_interval` resamples each sample with replacement from a seeded generator:
  the same inputs and seed give the same interval.
* :func:`max_allowed_flags` is the pass bar for "records flagged at level alpha": under the
  null, the count is Binomial(n, alpha); a count whose upper tail probability is below the
  significance level is "significantly above alpha n" (n = 100, alpha = 0.01: at most 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Estimate",
    "binomial_upper_tail",
    "bootstrap_interval",
    "max_allowed_flags",
    "normal_sf",
    "roc_auc",
    "tpr_at_fpr",
]

FloatArray = NDArray[np.float64]
TwoSampleStatistic = Callable[[FloatArray, FloatArray], float]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval.

    Attributes:
        value: the statistic on the full samples.
        low: lower end of the interval.
        high: upper end of the interval.
        confidence: the interval's nominal coverage (0.95 for a 95% interval).
    """

    value: float
    low: float
    high: float
    confidence: float = 0.95

    def __str__(self) -> str:
        percent = round(self.confidence * 100)
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] ({percent}% CI)"

    def as_dict(self) -> dict[str, float]:
        """The estimate as a JSON-friendly mapping."""
        return asdict(self)


def _as_scores(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty: a statistic needs at least one score")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds a NaN or an infinite score")
    return array


def roc_auc(positives: ArrayLike, negatives: ArrayLike) -> float:
    """Area under the ROC curve of scores that should rank positives above negatives.

    Args:
        positives: scores of the positive class (members, deleted records).
        negatives: scores of the negative class (non-members).

    Returns:
        ``P(s+ > s-) + P(s+ = s-) / 2`` over all pairs; 0.5 is chance.
    """
    pos = _as_scores(positives, "positives")
    neg = np.sort(_as_scores(negatives, "negatives"))
    below = np.searchsorted(neg, pos, side="left")
    below_or_equal = np.searchsorted(neg, pos, side="right")
    wins = below.astype(np.float64) + 0.5 * (below_or_equal - below)
    return float(wins.sum() / (pos.size * neg.size))


def tpr_at_fpr(positives: ArrayLike, negatives: ArrayLike, fpr: float) -> float:
    """True-positive rate at a threshold whose false-positive rate is at most ``fpr``.

    The threshold is the ``k``-th largest negative score, ``k = floor(fpr * n_negatives)``
    (0-based), and a score counts as positive when strictly above it: at most ``k``
    negatives pass, so the realised FPR is at most ``fpr``.

    Args:
        positives: scores of the positive class.
        negatives: scores of the negative class.
        fpr: the allowed false-positive rate, in [0, 1).

    Returns:
        The fraction of positives strictly above the threshold.
    """
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    pos = _as_scores(positives, "positives")
    neg = np.sort(_as_scores(negatives, "negatives"))[::-1]
    allowed = math.floor(fpr * neg.size)
    threshold = neg[min(allowed, neg.size - 1)]
    return float(np.mean(pos > threshold))


def bootstrap_interval(
    statistic: TwoSampleStatistic,
    first: ArrayLike,
    second: ArrayLike,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Percentile bootstrap interval of a statistic of two independent samples.

    Each resample draws both samples with replacement, independently, from one generator
    seeded with ``seed``: the same inputs give the same interval. For a one-sample statistic,
    pass the sample twice and ignore the second argument.

    Args:
        statistic: maps (first, second) to a number, e.g. :func:`roc_auc`.
        first: the first sample (positives).
        second: the second sample (negatives).
        resamples: number of bootstrap resamples.
        confidence: nominal coverage of the interval.
        seed: seed of the resampling generator.

    Returns:
        The statistic on the full samples and the percentile interval of the resamples.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a = _as_scores(first, "first sample")
    b = _as_scores(second, "second sample")
    rng = np.random.default_rng(seed)
    values = np.empty(resamples, dtype=np.float64)
    for index in range(resamples):
        values[index] = statistic(
            a[rng.integers(0, a.size, a.size)], b[rng.integers(0, b.size, b.size)]
        )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return Estimate(float(statistic(a, b)), float(low), float(high), confidence)


def normal_sf(z: ArrayLike) -> FloatArray:
    """Upper tail of the standard normal, ``P(Z > z)``, computed with ``erfc`` (no cancellation)."""
    values = np.asarray(z, dtype=np.float64)
    return np.asarray(0.5 * np.vectorize(math.erfc)(values / math.sqrt(2.0)), dtype=np.float64)


def binomial_upper_tail(count: int, trials: int, probability: float) -> float:
    """``P(X >= count)`` for ``X ~ Binomial(trials, probability)``, summed in log space.

    Args:
        count: the observed count (0 gives 1.0).
        trials: number of trials n.
        probability: success probability per trial.
    """
    if trials < 0 or not 0.0 <= probability <= 1.0:
        raise ValueError(f"need trials >= 0 and probability in [0, 1], got {trials}, {probability}")
    if count <= 0:
        return 1.0
    if count > trials:
        return 0.0
    if probability in (0.0, 1.0):
        return 1.0 if probability == 1.0 else 0.0
    log_p, log_q = math.log(probability), math.log1p(-probability)
    terms = [
        math.lgamma(trials + 1)
        - math.lgamma(k + 1)
        - math.lgamma(trials - k + 1)
        + k * log_p
        + (trials - k) * log_q
        for k in range(count, trials + 1)
    ]
    peak = max(terms)
    return float(min(1.0, math.exp(peak) * sum(math.exp(t - peak) for t in terms)))


def max_allowed_flags(trials: int, alpha: float, significance: float = 0.05) -> int:
    """Largest flag count that is not significantly above ``alpha * trials``.

    Under the null (no record is a member) each of ``trials`` records is flagged at level
    ``alpha`` with probability ``alpha``, so the count is Binomial(trials, alpha). A count
    ``k`` is significantly high when ``P(X >= k) < significance``.

    Args:
        trials: number of records tested.
        alpha: the per-record test level (0.01).
        significance: level of the count test (0.05).

    Returns:
        The pass bar: a verdict passes when the count is at most this (3 for 100 at 0.01).
    """
    allowed = 0
    while allowed < trials and binomial_upper_tail(allowed + 1, trials, alpha) >= significance:
        allowed += 1
    return allowed

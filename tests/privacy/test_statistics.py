"""Tests of the shared privacy statistics against scikit-learn and scipy on small samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom
from sklearn.metrics import roc_auc_score

from unlearn_ops.privacy.statistics import (
    Estimate,
    binomial_upper_tail,
    bootstrap_interval,
    max_allowed_flags,
    normal_sf,
    roc_auc,
    tpr_at_fpr,
)


def test_roc_auc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    pos = np.round(rng.normal(0.5, 1.0, 60), 1)
    neg = np.round(rng.normal(0.0, 1.0, 80), 1)
    labels = np.r_[np.ones(60), np.zeros(80)]
    expected = roc_auc_score(labels, np.r_[pos, neg])
    assert roc_auc(pos, neg) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_extremes() -> None:
    assert roc_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert roc_auc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert roc_auc([1.0], [1.0]) == 0.5


def test_tpr_at_fpr_never_exceeds_the_asked_fpr() -> None:
    neg = np.arange(100, dtype=float)  # 0..99
    pos = np.array([98.5, 99.5, 100.5, 50.0])
    # 1% of 100 negatives: one negative (99) may pass; threshold is 98.
    assert tpr_at_fpr(pos, neg, 0.01) == 0.75
    # 0.1% of 100 negatives: none may pass; threshold is the largest negative.
    assert tpr_at_fpr(pos, neg, 0.001) == 0.5
    realised = np.mean(neg > np.sort(neg)[::-1][1])
    assert realised <= 0.01


def test_tpr_at_fpr_rejects_bad_fpr_and_empty_samples() -> None:
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr([1.0], [0.0], 1.0)
    with pytest.raises(ValueError, match="empty"):
        roc_auc([], [0.0])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([np.nan], [0.0])


def test_bootstrap_interval_is_seeded_and_covers_the_estimate() -> None:
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1.0, 1.0, 100), rng.normal(0.0, 1.0, 100)
    first = bootstrap_interval(roc_auc, pos, neg, resamples=300, seed=7)
    again = bootstrap_interval(roc_auc, pos, neg, resamples=300, seed=7)
    other = bootstrap_interval(roc_auc, pos, neg, resamples=300, seed=8)
    assert first == again
    assert first != other
    assert first.low < first.value < first.high
    # The population AUC of N(1,1) vs N(0,1) is Phi(1/sqrt 2) = 0.760.
    assert first.low < 0.760 < first.high
    assert first.high - first.low < 0.2
    assert isinstance(first, Estimate)
    assert "95% CI" in str(first)
    assert first.as_dict()["value"] == first.value


def test_normal_sf_matches_scipy_far_in_the_tail() -> None:
    z = np.array([-3.0, 0.0, 1.0, 2.326, 10.0])
    from scipy.stats import norm

    assert np.allclose(normal_sf(z), norm.sf(z), rtol=1e-10, atol=0)


@pytest.mark.parametrize(("count", "trials", "p"), [(4, 100, 0.01), (0, 10, 0.3), (7, 20, 0.2)])
def test_binomial_upper_tail_matches_scipy(count: int, trials: int, p: float) -> None:
    assert binomial_upper_tail(count, trials, p) == pytest.approx(binom.sf(count - 1, trials, p))


def test_binomial_upper_tail_is_stable_for_large_n() -> None:
    value = binomial_upper_tail(80, 5000, 0.01)
    assert value == pytest.approx(binom.sf(79, 5000, 0.01), rel=1e-9)


def test_max_allowed_flags_is_three_of_a_hundred_at_one_percent() -> None:
    assert binomial_upper_tail(4, 100, 0.01) == pytest.approx(0.0184, abs=1e-3)
    assert max_allowed_flags(100, 0.01) == 3
    assert max_allowed_flags(10, 0.01) == 1
    assert max_allowed_flags(0, 0.01) == 0

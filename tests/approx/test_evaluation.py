"""MIA efficacy and the NeurIPS 2023 score F on samples with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearn_ops.approx.evaluation import (
    EPSILON_CAP,
    attack_threshold,
    example_epsilon,
    forgetting_quality,
    mia_efficacy,
    record_scores,
)


def test_the_attack_threshold_sits_between_members_and_nonmembers() -> None:
    rng = np.random.default_rng(0)
    threshold = attack_threshold(rng.normal(2.0, 1.0, 2000), rng.normal(0.0, 1.0, 2000))
    assert threshold == pytest.approx(1.0, abs=0.1)


def test_no_member_signal_calls_no_one_a_member() -> None:
    rng = np.random.default_rng(1)
    assert attack_threshold(rng.normal(0.0, 1.0, 500), rng.normal(1.0, 1.0, 500)) == math.inf


def test_mia_efficacy_is_high_for_forgotten_records_that_look_like_test_records() -> None:
    rng = np.random.default_rng(2)
    retained, test = rng.normal(3.0, 1.0, 1000), rng.normal(0.0, 1.0, 1000)
    like_test = mia_efficacy(rng.normal(0.0, 1.0, 500), retained, test)
    like_members = mia_efficacy(rng.normal(3.0, 1.0, 500), retained, test)
    assert like_test > 0.9
    assert like_members < 0.1


def test_a_perfectly_separated_record_gets_the_cap_and_a_mixed_one_does_not() -> None:
    assert example_epsilon([5.0, 5.1, 5.2, 5.3, 5.4], [0.0, 0.1, 0.2, 0.3, 0.4]) == EPSILON_CAP
    mixed = example_epsilon([0.0, 0.2, 0.4, 0.6, 0.8], [0.1, 0.3, 0.5, 0.7, 0.9])
    assert 0.0 < mixed < EPSILON_CAP


def test_epsilon_of_one_threshold_by_hand() -> None:
    # "phi > 0.15" takes 4 of 5 unlearned (FNR 0.2) and 1 of 5 retrained (FPR 0.2); every
    # attack with one rate 0 has the other positive (skipped): log(1 - delta - 0.2) - log(0.2).
    unlearned, retrained = [0.1, 0.2, 0.3, 0.4, 0.5], [-0.4, -0.3, -0.2, -0.1, 0.25]
    expected = math.log(1.0 - 1e-5 - 0.2) - math.log(0.2)
    assert example_epsilon(unlearned, retrained) == pytest.approx(expected, abs=1e-9)


def test_a_point_mass_is_peaky_and_gets_the_cap() -> None:
    assert example_epsilon([1.0] * 5, [0.0, 1.0, 2.0, 3.0, 4.0]) == EPSILON_CAP


def test_f_is_one_for_indistinguishable_samples_and_zero_for_separated_ones() -> None:
    rng = np.random.default_rng(3)
    same = rng.normal(0.0, 1.0, (64, 200))
    # With N = 64 and one draw reused, no attack separates them: every epsilon is 0.
    assert forgetting_quality(same, same.copy()) == 1.0
    apart = forgetting_quality(same + 10.0, same)
    assert apart == 0.0
    halfway = forgetting_quality(rng.normal(0.0, 1.0, (64, 200)), same)
    assert 0.0 < halfway < 1.0


def test_record_scores_are_per_record_and_average_to_f() -> None:
    rng = np.random.default_rng(4)
    retrained = rng.normal(0.0, 1.0, (32, 50))
    unlearned = retrained.copy()
    unlearned[:, :10] += 10.0  # ten records told apart, forty the same draw
    scores = record_scores(unlearned, retrained)
    assert scores.shape == (50,)
    assert list(scores[:10]) == [0.0] * 10
    assert list(scores[10:]) == [1.0] * 40
    assert float(scores.mean()) == forgetting_quality(unlearned, retrained) == 0.8


def test_f_needs_two_samples_of_one_shape() -> None:
    with pytest.raises(ValueError, match="one shape"):
        forgetting_quality(np.zeros((5, 3)), np.zeros((5, 4)))

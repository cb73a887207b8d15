"""Mean of probabilities versus majority vote, on a tiny hand-made array."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_ops.sisa.aggregation import aggregate

# Three shards, two rows, three classes.
# Row 0: shards 1 and 2 prefer class 1 by a little; shard 0 is sure of class 0.
#        The mean picks class 0, the vote class 1.
# Row 1: every shard prefers class 2.
PROBABILITIES = np.array(
    [
        [[0.90, 0.05, 0.05], [0.10, 0.20, 0.70]],
        [[0.30, 0.40, 0.30], [0.20, 0.20, 0.60]],
        [[0.30, 0.40, 0.30], [0.30, 0.10, 0.60]],
    ]
)


def test_mean_by_hand() -> None:
    scores = aggregate(PROBABILITIES, "mean")
    np.testing.assert_allclose(scores, [[0.5, 0.85 / 3, 0.65 / 3], [0.2, 0.5 / 3, 1.9 / 3]])
    assert scores.argmax(axis=1).tolist() == [0, 2]


def test_mean_is_the_default() -> None:
    np.testing.assert_array_equal(aggregate(PROBABILITIES), aggregate(PROBABILITIES, "mean"))


def test_vote_by_hand() -> None:
    scores = aggregate(PROBABILITIES, "vote")
    mean = PROBABILITIES.mean(axis=0)
    # Votes plus the mean scaled by 1 / (2 * shards), then normalised per row.
    raw = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]) + mean / 6.0
    np.testing.assert_allclose(scores, raw / raw.sum(axis=1, keepdims=True))
    assert scores.argmax(axis=1).tolist() == [1, 2]
    np.testing.assert_allclose(scores.sum(axis=1), [1.0, 1.0])


def test_a_vote_tie_goes_to_the_higher_mean_probability() -> None:
    probabilities = np.array([[[0.6, 0.4, 0.0]], [[0.1, 0.5, 0.4]]])
    # One vote each for classes 0 and 1; class 1 has the higher mean (0.45 against 0.35).
    assert aggregate(probabilities, "vote").argmax(axis=1).tolist() == [1]
    assert aggregate(probabilities, "mean").argmax(axis=1).tolist() == [1]
    flipped = probabilities[:, :, [1, 0, 2]]
    assert aggregate(flipped, "vote").argmax(axis=1).tolist() == [0]


def test_a_tie_breaker_never_outweighs_a_vote() -> None:
    # Two shards vote class 0 barely; one is certain of class 1: the votes win.
    probabilities = np.array([[[0.51, 0.49]], [[0.51, 0.49]], [[0.0, 1.0]]])
    assert aggregate(probabilities, "vote").argmax(axis=1).tolist() == [0]
    assert aggregate(probabilities, "mean").argmax(axis=1).tolist() == [1]


def test_one_shard_is_its_own_ensemble() -> None:
    one = PROBABILITIES[:1]
    np.testing.assert_array_equal(aggregate(one, "mean"), one[0])
    assert aggregate(one, "vote").argmax(axis=1).tolist() == one[0].argmax(axis=1).tolist()


@pytest.mark.parametrize("shape", [(2, 3), (0, 2, 3), (2, 2, 2, 2)])
def test_bad_shapes_are_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected"):
        aggregate(np.zeros(shape))


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        aggregate(PROBABILITIES, "median")  # type: ignore[arg-type]

"""The ridge reconstruction: a deleted record comes back from Δθ; fresh noise stops it.

Tiny Gaussian data (no public record is close to the deleted one, so the nearest-neighbour
baseline is low and the excess shows what the pair adds), a fixed seed.
"""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_ops.errors import ConfigError
from unlearn_ops.privacy.reconstruction import (
    ReconstructionResult,
    assess_reconstruction,
    fit_ridge,
    public_hessian,
    reconstruct,
)

CLASSES = 3
RIDGE = 1.0


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train features, train labels, public features): 200 and 400 records of 30 features."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (CLASSES, 30))
    labels = rng.integers(0, CLASSES, 600)
    features = centres[labels] + rng.normal(0, 1, (600, 30))
    return features[:200], labels[:200], features[200:]


def release_pair(deleted: list[int]) -> tuple[np.ndarray, np.ndarray]:
    features, labels, _ = data()
    keep = np.setdiff1d(np.arange(len(labels)), deleted)
    before = fit_ridge(features, labels, CLASSES, RIDGE)
    after = fit_ridge(features[keep], labels[keep], CLASSES, RIDGE)
    return before, after


def assess(before: np.ndarray, after: np.ndarray, deleted: int | list[int]) -> ReconstructionResult:
    """The attack on a release pair of `data()`, scored against the `deleted` record(s)."""
    features, labels, public = data()
    return assess_reconstruction(
        before,
        after,
        public_features=public,
        num_train=200,
        ridge=RIDGE,
        deleted_features=features[deleted],
        deleted_labels=labels[deleted],
    )


def test_the_exact_hessian_recovers_the_deleted_record_exactly() -> None:
    features, labels, _ = data()
    before, after = release_pair([5])
    design = np.hstack([features, np.ones((200, 1))])
    exact = np.delete(design, 5, axis=0)
    hessian = exact.T @ exact + RIDGE * np.eye(31)

    record, label = reconstruct(after - before, hessian, before)

    np.testing.assert_allclose(record, features[5], atol=1e-6)
    assert label == labels[5]


def test_public_samples_recover_the_deleted_record_and_its_label() -> None:
    results = [assess(*release_pair([index]), index) for index in range(8)]

    assert np.median([r.cosine for r in results]) > 0.9
    assert np.median([r.excess_cosine for r in results]) > 0.2
    assert all(r.rank == 1 for r in results)


def test_the_label_of_a_deleted_digit_is_recovered() -> None:
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    features = features / 16.0
    train, public = slice(0, 1000), slice(1000, 1600)
    before = fit_ridge(features[train], labels[train], 10, RIDGE)
    recovered = 0
    for index in range(20):
        keep = np.setdiff1d(np.arange(1000), [index])
        after = fit_ridge(features[keep], labels[keep], 10, RIDGE)
        result = assess_reconstruction(
            before,
            after,
            public_features=features[public],
            num_train=1000,
            ridge=RIDGE,
            deleted_features=features[index],
            deleted_labels=labels[index],
        )
        recovered += result.label_recovered

    assert recovered >= 14  # chance: 2 of 20


def test_fresh_noise_on_both_releases_hides_the_record() -> None:
    rng = np.random.default_rng(9)
    excess = []
    for index in range(8):
        before, after = release_pair([index])
        # Independent noise per release: it does not cancel in the difference.
        before = before + rng.normal(0, 0.02, before.shape)
        after = after + rng.normal(0, 0.02, after.shape)
        excess.append(assess(before, after, index).excess_cosine)

    assert np.median(excess) < 0.1


def test_noise_reused_by_both_releases_cancels_and_hides_nothing() -> None:
    before, after = release_pair([3])
    noise = np.random.default_rng(2).normal(0, 0.02, before.shape)

    result = assess(before + noise, after + noise, 3)

    assert result.rank == 1
    assert result.excess_cosine > 0.2


def test_a_batch_is_scored_against_its_best_matching_record() -> None:
    before, after = release_pair([1, 2, 3, 4])

    result = assess(before, after, [1, 2, 3, 4])

    assert result.deleted == 4
    assert -1.0 <= result.cosine <= 1.0
    assert result.excess_cosine == pytest.approx(result.cosine - result.baseline_cosine)


def test_the_public_hessian_scales_to_the_training_size() -> None:
    _, _, public = data()
    small, large = public_hessian(public, 100, RIDGE), public_hessian(public, 400, RIDGE)
    np.testing.assert_allclose(large - RIDGE * np.eye(31), 4 * (small - RIDGE * np.eye(31)))


def test_shapes_that_do_not_fit_are_refused() -> None:
    features, labels, public = data()
    before, after = release_pair([0])
    with pytest.raises(ConfigError, match="do not fit"):
        assess_reconstruction(
            before,
            after,
            public_features=public,
            num_train=200,
            ridge=RIDGE,
            deleted_features=features[0, :5],
            deleted_labels=labels[0],
        )
    with pytest.raises(ConfigError, match="ridge must be > 0"):
        fit_ridge(features, labels, CLASSES, 0.0)

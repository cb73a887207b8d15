"""FedEraser's calibrated update: the fresh direction, the stored length (per unit or layer)."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_ops.federated.calibration import calibrate, norm, stretch


def _update(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.normal(size=(4, 3)).astype(np.float32),  # a weight matrix: 4 output units
        rng.normal(size=4).astype(np.float32),  # its biases
        rng.normal(size=(2, 3, 2, 2)).astype(np.float32),  # a convolution: 2 filters
    ]


def _unit_norms(array: np.ndarray) -> np.ndarray:
    return np.linalg.norm(array.reshape(len(array), -1).astype(np.float64), axis=1)


def test_per_unit_each_output_unit_keeps_its_stored_length_and_fresh_direction() -> None:
    stored, fresh = _update(0), _update(1)
    weights, biases, filters = calibrate(stored, fresh, "unit")

    for new, old, got in ((weights, stored[0], fresh[0]), (filters, stored[2], fresh[2])):
        assert new.dtype == np.float32
        assert new.shape == old.shape
        np.testing.assert_allclose(_unit_norms(new), _unit_norms(old), rtol=1e-5)
        for unit_new, unit_fresh in zip(new, got, strict=True):
            cosine = np.dot(unit_new.ravel(), unit_fresh.ravel()) / (
                np.linalg.norm(unit_new) * np.linalg.norm(unit_fresh)
            )
            assert cosine == pytest.approx(1.0, abs=1e-6)
    # A vector (biases) is one unit: its whole length, as in the paper.
    assert norm(biases) == pytest.approx(norm(stored[1]), rel=1e-5)
    np.testing.assert_allclose(biases / norm(biases), fresh[1] / norm(fresh[1]), atol=1e-6)


def test_per_layer_each_array_keeps_its_stored_length_not_each_unit() -> None:
    stored, fresh = _update(0), _update(1)
    calibrated = calibrate(stored, fresh, "layer")

    for new, old, got in zip(calibrated, stored, fresh, strict=True):
        assert norm(new) == pytest.approx(norm(old), rel=1e-5)
        np.testing.assert_allclose(new / norm(new), got / norm(got), atol=1e-6)
    # The units share the layer's length in the fresh update's proportions.
    ratios = _unit_norms(calibrated[0]) / _unit_norms(fresh[0])
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-5)
    assert not np.allclose(_unit_norms(calibrated[0]), _unit_norms(stored[0]))


def test_a_unit_the_fresh_update_leaves_still_stays_still() -> None:
    stored, fresh = _update(0), _update(1)
    fresh[0][2] = 0.0
    fresh[1][:] = 0.0
    weights, biases, _ = calibrate(stored, fresh, "unit")
    assert not weights[2].any()
    assert not biases.any()
    assert np.isfinite(weights).all()
    assert _unit_norms(weights)[0] == pytest.approx(_unit_norms(stored[0])[0], rel=1e-5)


def test_the_same_updates_give_the_same_bits() -> None:
    first = calibrate(_update(0), _update(1))
    second = calibrate(_update(0), _update(1))
    assert all(a.tobytes() == b.tobytes() for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(
    ("stored", "fresh", "message"),
    [
        ([np.zeros((2, 2))], [np.zeros((2, 2)), np.zeros(2)], "1 arrays against 2"),
        ([np.zeros((2, 2))], [np.zeros((2, 3))], r"shape \(2, 2\) against \(2, 3\)"),
    ],
)
def test_updates_of_another_model_are_refused(
    stored: list[np.ndarray], fresh: list[np.ndarray], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        calibrate(stored, fresh)


def test_stretch_scales_each_array_to_the_move_over_the_interval() -> None:
    step = [np.ones(4, dtype=np.float32), np.ones(2, dtype=np.float32)]
    start = [np.zeros(4, dtype=np.float32), np.zeros(2, dtype=np.float32)]
    end = [np.full(4, 3.0, dtype=np.float32), np.zeros(2, dtype=np.float32)]
    retained = [np.ones(4, dtype=np.float32), np.zeros(2, dtype=np.float32)]

    stretched, unmoved = stretch(step, start, end, retained)
    np.testing.assert_allclose(stretched, 3.0)  # the interval went 3x as far as its round
    assert stretched.dtype == np.float32
    np.testing.assert_array_equal(unmoved, step[1])  # no retained step: left as it is

"""FedEraser's arithmetic, shared by the simulation engine and the Flower ServerApp.

A calibrated update keeps the *direction* of a remaining client's fresh calibration update
and the *length* of the update that client sent in the same round of the original training
(Liu et al., IWQoS 2021, section IV-B). The paper measures that length per layer (per
array); `granularity="unit"` measures it per output unit instead: each row of a weight
matrix, each filter of a convolution (vectors such as biases stay per array). A layer's
norm lets the fresh direction move length between the layer's units; in the output layer
that is between classes, and a class the original training pushed hard (the honest sites
correcting a label flipper's pull) comes out under-trained. Per unit, every class's step
keeps its own length (measured in docs/FEDERATED_UNLEARNING.md).

All sums are in float64 and cast back to each array's dtype, in a fixed order: the same
inputs give the same bits on either engine.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from unlearn_ops.federated.client import Weights

__all__ = ["Granularity", "calibrate", "norm", "stretch"]

Granularity = Literal["unit", "layer"]


def norm(array: np.ndarray) -> float:
    """The Euclidean norm in float64.

    An elementwise sum, not np.linalg.norm: its BLAS call spins threads that cost
    milliseconds per small array on a busy machine.
    """
    return float(np.sqrt(np.square(array, dtype=np.float64).sum()))


def _unit_norms(array: np.ndarray) -> np.ndarray:
    """The norm of each output unit (the first axis), in float64."""
    flat = array.reshape(array.shape[0], -1)
    norms: np.ndarray = np.sqrt(np.square(flat, dtype=np.float64).sum(axis=1))
    return norms


def _scale(array: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    return (array.astype(np.float64) * factor).astype(array.dtype)


def calibrate(stored: Weights, fresh: Weights, granularity: Granularity = "unit") -> Weights:
    """The fresh update's direction with the stored update's length, array by array.

    A part of the fresh update that is zero stays zero (it has no direction to keep).

    Raises:
        ValueError: the two updates differ in arrays or shapes.
    """
    if len(stored) != len(fresh):
        raise ValueError(f"a stored update of {len(stored)} arrays against {len(fresh)}")
    calibrated: Weights = []
    for old, new in zip(stored, fresh, strict=True):
        if old.shape != new.shape:
            raise ValueError(f"a stored array of shape {old.shape} against {new.shape}")
        if granularity == "unit" and new.ndim >= 2:
            sizes = _unit_norms(new)
            safe = np.where(sizes > 0, sizes, 1.0)
            factors = np.where(sizes > 0, _unit_norms(old) / safe, 0.0)
            calibrated.append(_scale(new, factors.reshape((-1,) + (1,) * (new.ndim - 1))))
        else:
            size = norm(new)
            calibrated.append(_scale(new, norm(old) / size if size > 0 else 0.0))
    return calibrated


def stretch(step: Weights, start: Weights, end: Weights, retained_step: Weights) -> Weights:
    """`step` scaled, per array, by |end - start| / |retained_step|.

    With rounds skipped (Delta > 1), `start` and `end` are the original group model at the
    start of a retained round and at the end of its interval, `retained_step` that round's
    own FedAvg step: a calibrated step then travels as far as the interval did. An array
    whose retained step was zero is left as it is.
    """
    stretched: Weights = []
    for array, moved_from, moved_to, original in zip(step, start, end, retained_step, strict=True):
        length = norm(original)
        factor = norm(moved_to - moved_from) / length if length > 0 else 1.0
        stretched.append(_scale(array, factor))
    return stretched

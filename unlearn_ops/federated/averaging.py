"""FedAvg: the example-weighted mean of client weights, in a fixed order.

Summation is in float64 over the results in the order given and cast back to each array's
dtype, so the same updates in the same order always give the same bits; callers pass
results sorted by client (see :mod:`unlearn_ops.federated.groups`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unlearn_ops.federated.client import Weights

__all__ = ["federated_average", "weights_delta"]


def federated_average(results: Sequence[tuple[Weights, int]]) -> Weights:
    """The example-weighted mean of `(weights, num_examples)` pairs (McMahan et al. 2017).

    Raises:
        ValueError: no results, or no examples at all.
    """
    if not results:
        raise ValueError("FedAvg needs at least one client's result")
    total = sum(count for _, count in results)
    if total <= 0:
        raise ValueError("FedAvg needs at least one example")
    first = results[0][0]
    sums = [np.zeros(array.shape, dtype=np.float64) for array in first]
    for weights, count in results:
        for accumulator, array in zip(sums, weights, strict=True):
            accumulator += array.astype(np.float64) * (count / total)
    return [s.astype(array.dtype) for s, array in zip(sums, first, strict=True)]


def weights_delta(new: Weights, old: Weights) -> Weights:
    """`new - old`, array by array (a client's update), in float32."""
    return [(n.astype(np.float32) - o.astype(np.float32)) for n, o in zip(new, old, strict=True)]

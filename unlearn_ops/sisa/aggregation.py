"""Aggregation of shard outputs into the ensemble's prediction (Bourtoule et al. 2021, IV-D)."""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["aggregate"]


def aggregate(probabilities: np.ndarray, method: Literal["mean", "vote"] = "mean") -> np.ndarray:
    """Combine per-shard class probabilities of shape (shards, rows, classes).

    Args:
        probabilities: each shard model's softmax output.
        method: `mean` averages probabilities; `vote` counts each shard's top class and breaks
            ties by the mean probability.

    Returns:
        Ensemble scores of shape (rows, classes) that sum to 1 per row.
    """
    if probabilities.ndim != 3 or probabilities.shape[0] == 0:
        raise ValueError(
            f"expected (shards, rows, classes) with shards > 0, got {probabilities.shape}"
        )
    mean: np.ndarray = probabilities.mean(axis=0)
    if method == "mean":
        return mean
    if method != "vote":
        raise ValueError(f"unknown aggregation {method!r}; use 'mean' or 'vote'")
    shards, rows, classes = probabilities.shape
    votes = np.zeros((rows, classes), dtype=np.float64)
    winners = probabilities.argmax(axis=2)
    for shard in range(shards):
        votes[np.arange(rows), winners[shard]] += 1.0
    # A tie-breaker smaller than one vote: mean probability scaled below 1 / shards.
    scores: np.ndarray = votes + mean / (2.0 * shards)
    normalised: np.ndarray = scores / scores.sum(axis=1, keepdims=True)
    return normalised

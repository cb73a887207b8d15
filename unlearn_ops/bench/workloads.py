"""The benchmark's workloads: datasets and the params to train them with, and the S sweeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FLOW_WORKLOADS", "QUICK", "SWEEPS", "WORKLOADS", "Workload"]


@dataclass(frozen=True)
class Workload:
    """A dataset and the params to train it with."""

    name: str
    dataset: str
    params: dict[str, Any]
    description: str


# S=8 on digits (the default params); S=4 on MNIST-5k, where the shard sweep of the same
# run shows S=8 costs the ensemble more than 2 points of accuracy (docs/BENCHMARKS.md).
_SISA = {"shards": 8, "slices": 4}
_SISA_MNIST = {"shards": 4, "slices": 4}
# S swept per workload, to choose S with numbers: accuracy against the one-record bound.
SWEEPS: dict[str, tuple[int, ...]] = {"mnist-mlp": (2, 4, 8, 16), "mnist-cnn": (4, 8)}
# The end-to-end flow figures run on the default small model, and on the heavy workload at
# S=8: at S=4 a one-record forget's compute bound is itself only about 5.3x a full retrain
# (3 of 4 shards untouched, and on average 3/4 of the fourth retrained), while S=8 costs
# the CNN ensemble about 4 points of accuracy (docs/BENCHMARKS.md: the trade-off of S).
FLOW_WORKLOADS: dict[str, dict[str, Any]] = {
    "mnist-mlp": {},
    "mnist-cnn": {"sisa": {"shards": 8, "slices": 4}},
}


def _params(sisa: dict[str, int], model: dict[str, Any], epochs_per_stage: int) -> dict[str, Any]:
    """A workload's params: its SISA layout, its model, its epochs a stage (batches of 32)."""
    training = {"epochs_per_stage": epochs_per_stage, "batch_size": 32}
    return {"sisa": sisa, "model": model, "training": training}


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "digits-mlp",
        "digits",
        _params(_SISA, {"name": "mlp", "hidden_sizes": [128]}, 20),
        "digits (1,797 x 64), MLP 64-128-10",
    ),
    Workload(
        "mnist-mlp",
        "mnist-5k",
        _params(_SISA_MNIST, {"name": "mlp", "hidden_sizes": [128]}, 10),
        "MNIST-5k (5,000 x 784), MLP 784-128-10 (the default small model)",
    ),
    Workload(
        "mnist-cnn",
        "mnist-5k",
        _params(_SISA_MNIST, {"name": "cnn", "channels": [32, 64], "hidden_sizes": [128]}, 30),
        "MNIST-5k, CNN conv32-conv64-fc128 (the heavy workload)",
    ),
)

QUICK = Workload(
    "quick",
    "digits",
    {
        "sisa": {"shards": 2, "slices": 2},
        "model": {"name": "mlp", "hidden_sizes": [16]},
        "training": {"epochs_per_stage": 1},
        "gates": {"min_accuracy": 0.0, "max_accuracy_drop": 1.0},
    },
    "digits, tiny settings (harness check only)",
)

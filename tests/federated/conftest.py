"""A tiny synthetic federation shared by the federated tests (seeded, a few hundred rows)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import FederatedData, make_federated_data
from unlearn_ops.params import ModelParams

KEY = "test-id-hash-key"


def blobs(
    seed: int = 0, per_class: int = 120, classes: int = 3, features: int = 8, spread: float = 2.5
):
    """Gaussian blobs: class c centred at spread * e_c, unit noise (float32, int64 labels)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    centres = np.zeros((classes, features))
    centres[np.arange(classes), np.arange(classes)] = spread
    x = centres[labels] + rng.normal(size=(len(labels), features))
    return x.astype(np.float32), labels.astype(np.int64)


@pytest.fixture
def tiny_data() -> FederatedData:
    x, y = blobs()
    return make_federated_data(
        x, y, num_clients=6, alpha=5.0, seed=3, test_fraction=0.25, root_size=30
    )


def mlp_federation(hidden: int, **fields: Any) -> FederationParams:
    """A federation of MLPs with one hidden layer of `hidden` units; `fields` set the rest."""
    return FederationParams(model=ModelParams(name="mlp", hidden_sizes=(hidden,)), **fields)


@pytest.fixture
def tiny_params() -> FederationParams:
    return mlp_federation(
        8, rounds=4, local_epochs=2, batch_size=16, learning_rate=0.2, num_groups=2
    )

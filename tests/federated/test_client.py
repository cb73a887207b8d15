"""Local training is a pure function of its inputs; FedAvg is the example-weighted mean."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_ops.federated.averaging import federated_average, weights_delta
from unlearn_ops.federated.client import (
    initial_weights,
    load_weights,
    local_update,
    weights_hash,
)
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import FederatedData


def test_local_update_is_deterministic(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    start = initial_weights(tiny_params, tiny_data.num_features, tiny_data.num_classes)
    client = tiny_data.clients[0]
    first = local_update(start, client, tiny_params, num_classes=3, round_number=2)
    again = local_update(start, client, tiny_params, num_classes=3, round_number=2)
    other_round = local_update(start, client, tiny_params, num_classes=3, round_number=3)
    assert weights_hash(first.weights) == weights_hash(again.weights)
    assert weights_hash(first.weights) != weights_hash(other_round.weights)
    assert weights_hash(first.weights) != weights_hash(start)
    assert first.num_examples == client.num_examples
    assert first.metrics["train_loss"] > 0


def test_initial_weights_differ_by_group_and_seed(tiny_params: FederationParams) -> None:
    a = weights_hash(initial_weights(tiny_params, 8, 3, group_id=0))
    assert a == weights_hash(initial_weights(tiny_params, 8, 3, group_id=0))
    assert a != weights_hash(initial_weights(tiny_params, 8, 3, group_id=1))
    reseeded = tiny_params.model_copy(update={"seed": 1})
    assert a != weights_hash(initial_weights(reseeded, 8, 3, group_id=0))


def test_load_weights_refuses_weights_of_another_model(tiny_params: FederationParams) -> None:
    weights = initial_weights(tiny_params, 8, 3)
    with pytest.raises(ValueError, match="arrays given"):
        load_weights(weights[:-1], tiny_params, 8, 3)


def test_federated_average_weights_by_examples() -> None:
    a = [np.array([1.0, 2.0], dtype=np.float32)]
    b = [np.array([4.0, 8.0], dtype=np.float32)]
    mean = federated_average([(a, 1), (b, 3)])
    np.testing.assert_allclose(mean[0], [3.25, 6.5])
    assert mean[0].dtype == np.float32
    np.testing.assert_allclose(weights_delta(b, a)[0], [3.0, 6.0])
    with pytest.raises(ValueError, match="at least one"):
        federated_average([])

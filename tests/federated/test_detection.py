"""FLTrust and FoolsGold scores, and flagging label flippers on a small synthetic federation."""

from __future__ import annotations

import numpy as np
import pytest

from tests.federated.conftest import KEY, blobs, mlp_federation
from unlearn_ops.federated.data import ClientData, flip_labels, make_federated_data
from unlearn_ops.federated.detection import (
    PoisoningMonitor,
    flag_clients,
    fltrust_scores,
    foolsgold_weights,
    rescale_to_reference,
)
from unlearn_ops.federated.simulation import run_federation


def _w(*values: float) -> list[np.ndarray]:
    return [np.array(values, dtype=np.float32)]


def test_fltrust_is_the_relu_of_the_cosine_to_the_server_update() -> None:
    server = _w(1.0, 0.0)
    scores = fltrust_scores(
        {"same": _w(2.0, 0.0), "right": _w(0.0, 1.0), "against": _w(-1.0, 0.0)}, server
    )
    assert scores == {"same": 1.0, "right": 0.0, "against": 0.0}
    half = fltrust_scores({"diagonal": _w(1.0, 1.0)}, server)["diagonal"]
    assert abs(half - 2**-0.5) < 1e-9
    rescaled = rescale_to_reference(_w(3.0, 4.0), _w(0.0, 10.0))
    np.testing.assert_allclose(rescaled[0], [6.0, 8.0])


def test_foolsgold_gives_sybils_no_weight_and_distinct_clients_full_weight() -> None:
    weights = foolsgold_weights(
        {
            "sybil-a": np.array([1.0, 1.0, 0.0, 0.0]),
            "sybil-b": np.array([1.0, 1.0, 0.0, 0.0]),
            "honest-a": np.array([0.0, 0.0, 1.0, 0.0]),
            "honest-b": np.array([0.0, 0.0, 0.0, 1.0]),
        }
    )
    assert weights["sybil-a"] == 0.0
    assert weights["sybil-b"] == 0.0
    assert weights["honest-a"] == 1.0
    assert weights["honest-b"] == 1.0
    assert foolsgold_weights({"alone": np.ones(3)}) == {"alone": 1.0}


@pytest.mark.parametrize("seed", [2, 3])
def test_label_flippers_are_flagged_and_honest_clients_are_not(seed: int) -> None:
    # Near-IID clients (alpha = 100): the regime FLTrust's relative trust separates; on
    # strongly non-IID clients it does not (docs/FEDERATED_UNLEARNING.md, measured).
    x, y = blobs(per_class=200, classes=4, features=10, seed=seed, spread=2.0)
    data = make_federated_data(x, y, num_clients=8, alpha=100.0, seed=seed, root_size=40)
    flippers = [data.clients[2].client_id, data.clients[5].client_id]
    attacked = data.with_clients(
        [
            flip_labels(c, source_class=0, target_class=1) if c.client_id in flippers else c
            for c in data.clients
        ]
    )
    params = mlp_federation(16, rounds=5, local_epochs=1, batch_size=16, learning_rate=0.1)
    root = ClientData("server-root", data.root_features, data.root_labels)
    monitor = PoisoningMonitor(root, params, data.num_classes)
    run_federation(attacked, params, key=KEY, observers=[monitor])

    flags = flag_clients(monitor)
    assert sorted(f.client_id for f in flags) == sorted(flippers)
    assert all(f.round_number < 5 and f.reasons == ("fltrust",) for f in flags)
    assert set(monitor.trust[4]) == {c.client_id for c in data.clients}
    assert set(monitor.foolsgold[4]) == {c.client_id for c in data.clients}

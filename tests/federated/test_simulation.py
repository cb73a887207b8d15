"""The simulation engine: deterministic runs, a served ensemble, records without clear ids."""

from __future__ import annotations

import numpy as np

from tests.federated.conftest import KEY
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import FederatedData
from unlearn_ops.federated.simulation import class_recall, run_federation


def test_a_federation_replayed_gives_the_same_bits(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    first = run_federation(tiny_data, tiny_params, key=KEY)
    again = run_federation(tiny_data, tiny_params, key=KEY)
    assert first.record() == again.record()
    assert first.client_rounds == len(tiny_data.clients) * tiny_params.rounds
    reseeded = run_federation(tiny_data, tiny_params.model_copy(update={"seed": 5}), key=KEY)
    assert reseeded.record()["groups"] != first.record()["groups"]


def test_the_served_model_learns_and_averages_groups(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    run = run_federation(tiny_data, tiny_params, key=KEY)
    assert len(run.groups) == 2
    probabilities = run.predict_proba(tiny_data.test_features)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = np.mean(run.predict(tiny_data.test_features) == tiny_data.test_labels)
    assert accuracy > 0.8


def test_the_record_names_clients_by_keyed_hash_only(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    record = run_federation(
        tiny_data, tiny_params.model_copy(update={"rounds": 1}), key=KEY
    ).record()
    text = str(record)
    assert not any(c.client_id in text for c in tiny_data.clients)
    assert len(record["clients"]) == len(tiny_data.clients)


def test_class_recall() -> None:
    predictions = np.array([0, 1, 1, 2])
    labels = np.array([1, 1, 1, 2])
    assert class_recall(predictions, labels, 1) == 2 / 3
    assert np.isnan(class_recall(predictions, labels, 5))

"""Exact removal is certified bit for bit; FedEraser is cheaper and close to the retrain."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.federated.conftest import KEY
from unlearn_ops.errors import InvalidRequestError
from unlearn_ops.federated.averaging import federated_average
from unlearn_ops.federated.client import local_update, weights_hash
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import FederatedData
from unlearn_ops.federated.groups import hash_client_id
from unlearn_ops.federated.history import UpdateHistory
from unlearn_ops.federated.removal import (
    RemovalCertificate,
    certify_exact_removal,
    erase_clients_approximately,
    remove_clients_exactly,
)
from unlearn_ops.federated.simulation import run_federation
from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore


def test_exact_removal_of_a_late_joiner_is_certified_bit_for_bit(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    leaving = tiny_data.clients[4].client_id
    joins = {leaving: 2}
    store = MemoryCheckpointStore()
    run = run_federation(tiny_data, tiny_params, key=KEY, join_rounds=joins, store=store)
    group = run.assignment[leaving]
    removal = remove_clients_exactly(run, tiny_data.clients, [leaving], store=store)

    assert removal.groups_retrained == [group]
    assert removal.resumed_from_round == {group: 2}  # the last checkpoint before it joined
    members = sum(1 for g in run.assignment.values() if g == group) - 1
    assert removal.client_rounds == members * (tiny_params.rounds - 2)
    for other in set(run.groups) - {group}:  # untouched groups keep their very model
        assert removal.run.groups[other] is run.groups[other]
    certificates = certify_exact_removal(removal)
    assert [c.group_id for c in certificates] == [group]
    assert all(c.holds for c in certificates)
    assert certificates[0].retrained_hash != weights_hash(run.groups[group].weights)
    assert leaving not in str(removal.run.record())
    assert hash_in(removal.removed_hashes, run.record())


def hash_in(hashes: list[str], record: dict) -> bool:
    return all(h in record["clients"] for h in hashes)


def test_a_removal_that_kept_the_client_fails_its_certificate() -> None:
    certificate = RemovalCertificate(0, "a" * 64, "b" * 64, ())
    assert not certificate.holds
    assert certificate.as_dict()["holds"] is False


def test_exact_removal_without_checkpoints_gives_the_same_bits(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    store = MemoryCheckpointStore()
    run = run_federation(tiny_data, tiny_params, key=KEY, store=store)
    leaving = [tiny_data.clients[0].client_id]
    resumed = remove_clients_exactly(run, tiny_data.clients, leaving, store=store)
    scratch = remove_clients_exactly(run, tiny_data.clients, leaving, store=None)
    assert resumed.run.record() == scratch.run.record()


def test_removing_an_unknown_client_is_refused(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    run = run_federation(tiny_data, tiny_params.model_copy(update={"rounds": 1}), key=KEY)
    known = tiny_data.clients[0].client_id
    with pytest.raises(InvalidRequestError, match=r"1 of 2 client\(s\) to remove are not in"):
        remove_clients_exactly(run, tiny_data.clients, [known, "nobody"], store=None)
    with pytest.raises(InvalidRequestError, match="no client to remove"):
        remove_clients_exactly(run, tiny_data.clients, [], store=None)


def test_federaser_is_cheaper_than_a_retrain_and_close_to_it(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    params = tiny_params.model_copy(update={"num_groups": 1, "rounds": 6, "local_epochs": 3})
    history = UpdateHistory(KEY, params.erasure.interval)
    run = run_federation(tiny_data, params, key=KEY, observers=[history])
    leaving = [tiny_data.clients[1].client_id]
    erased = erase_clients_approximately(run, tiny_data.clients, leaving, history)
    retrain = remove_clients_exactly(run, tiny_data.clients, leaving, store=None)

    assert erased.provisional
    retrain_epochs = retrain.client_rounds * params.local_epochs
    assert erased.client_epochs * 2 <= retrain_epochs
    x, y = tiny_data.test_features, tiny_data.test_labels
    erased_accuracy = np.mean(erased.run.predict(x) == y)
    retrain_accuracy = np.mean(retrain.run.predict(x) == y)
    assert retrain_accuracy > 0.8
    assert abs(erased_accuracy - retrain_accuracy) <= 0.05
    assert weights_hash(erased.run.groups[0].weights) != weights_hash(run.groups[0].weights)


def test_federaser_finish_rounds_add_ordinary_fedavg_rounds_after_the_replay(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    params = tiny_params.model_copy(update={"num_groups": 1, "rounds": 3})
    history = UpdateHistory(KEY, params.erasure.interval)
    run = run_federation(tiny_data, params, key=KEY, observers=[history])
    leaving = [tiny_data.clients[1].client_id]
    plain = erase_clients_approximately(run, tiny_data.clients, leaving, history)
    finished_params = params.model_copy(
        update={"erasure": params.erasure.model_copy(update={"finish_rounds": 1})}
    )
    finished = erase_clients_approximately(
        replace(run, params=finished_params), tiny_data.clients, leaving, history
    )

    remaining = sorted(
        (c for c in tiny_data.clients if c.client_id not in leaving),
        key=lambda c: hash_client_id(c.client_id, KEY),
    )
    results = [
        local_update(
            plain.run.groups[0].weights,
            c,
            params,
            num_classes=tiny_data.num_classes,
            round_number=params.rounds,
        )
        for c in remaining
    ]
    expected = federated_average([(r.weights, r.num_examples) for r in results])
    assert weights_hash(finished.run.groups[0].weights) == weights_hash(expected)
    assert finished.client_rounds == plain.client_rounds + len(remaining)
    assert finished.client_epochs == plain.client_epochs + len(remaining) * params.local_epochs
    assert finished.provisional

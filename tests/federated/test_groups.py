"""Client groups: keyed, stable, balanced assignment; round keys; checkpoint resume."""

from __future__ import annotations

import numpy as np
from pydantic import SecretStr

from tests.federated.conftest import KEY
from unlearn_ops.federated.client import initial_weights, local_update, weights_hash
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import FederatedData
from unlearn_ops.federated.groups import (
    RoundEvent,
    assign_groups,
    decode_weights,
    encode_weights,
    finish_round,
    hash_client_id,
    latest_checkpoint,
    member_round_keys,
    round_keys,
    train_group,
    training_hash,
)
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore

CLIENTS = [f"hospital-{i}" for i in range(9)]


def test_client_hash_is_the_workspace_keyed_hash() -> None:
    settings = Settings(id_hash_key=SecretStr(KEY))
    assert hash_client_id("hospital-3", KEY) == settings.hash_record_id("client:hospital-3")
    assert hash_client_id("hospital-3", KEY) != hash_client_id("hospital-3", "other-key")


def test_assignment_is_stable_balanced_and_order_free() -> None:
    groups = assign_groups(CLIENTS, 3, KEY)
    assert groups == assign_groups(list(reversed(CLIENTS)), 3, KEY)
    assert sorted(list(groups.values()).count(g) for g in range(3)) == [3, 3, 3]
    assert groups != assign_groups(CLIENTS, 3, "another-key")


def test_a_client_joining_later_moves_nobody() -> None:
    before = assign_groups(CLIENTS, 3, KEY)
    after = assign_groups([*CLIENTS, "hospital-new"], 3, KEY, existing=before)
    assert {c: after[c] for c in CLIENTS} == before
    assert after["hospital-new"] in range(3)


def test_round_keys_change_only_from_the_round_a_client_joined(
    tiny_data: FederatedData,
) -> None:
    clients = list(tiny_data.clients[:3])
    joins = {clients[2].client_id: 2}
    training = "t"
    full = round_keys(0, clients, joins, rounds=4, training=training, key=KEY)
    without = round_keys(0, clients[:2], joins, rounds=4, training=training, key=KEY)
    assert full[:2] == without[:2]
    assert all(a != b for a, b in zip(full[2:], without[2:], strict=True))
    assert not any(c.client_id in k for k in full for c in clients)


def test_group_training_resumes_from_checkpoints_to_the_same_bits(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    store = MemoryCheckpointStore()
    clients = tiny_data.clients[:3]
    first = train_group(0, clients, tiny_params, num_classes=3, key=KEY, store=store)
    assert first.resumed_from_round == 0
    assert first.client_rounds == 3 * tiny_params.rounds
    assert len(list(store.keys())) == tiny_params.rounds
    again = train_group(0, clients, tiny_params, num_classes=3, key=KEY, store=store)
    assert again.resumed_from_round == tiny_params.rounds
    assert again.client_rounds == 0
    assert weights_hash(again.weights) == weights_hash(first.weights)
    assert weights_hash(decode_weights(encode_weights(first.weights))) == weights_hash(
        first.weights
    )
    assert training_hash(tiny_params, 8, 3) != training_hash(tiny_params, 8, 4)


def test_a_server_round_sums_in_keyed_hash_order_whatever_order_replies_came(
    tiny_data: FederatedData, tiny_params: FederationParams
) -> None:
    start = initial_weights(tiny_params, tiny_data.num_features, tiny_data.num_classes)
    results = {
        c.client_id: local_update(start, c, tiny_params, num_classes=3, round_number=0)
        for c in tiny_data.clients[:4]
    }
    seen: list[RoundEvent] = []
    forward = finish_round(0, 0, start, results, key=KEY, observers=[seen.append])
    backward = finish_round(0, 0, start, dict(reversed(list(results.items()))), key=KEY)
    assert weights_hash(forward) == weights_hash(backward)
    assert list(seen[0].results) == sorted(results, key=lambda c: hash_client_id(c, KEY))
    assert weights_hash(finish_round(0, 0, start, {}, key=KEY)) == weights_hash(start)


def test_server_side_keys_equal_the_simulation_keys(tiny_data: FederatedData) -> None:
    clients = list(tiny_data.clients[:3])
    joins = {clients[1].client_id: 1}
    members = [
        (hash_client_id(c.client_id, KEY), c.digest(), joins.get(c.client_id, 0)) for c in clients
    ]
    assert member_round_keys(0, members, rounds=3, training="t") == round_keys(
        0, clients, joins, rounds=3, training="t", key=KEY
    )
    store = MemoryCheckpointStore()
    keys = member_round_keys(0, members, rounds=3, training="t")
    assert latest_checkpoint(keys, store) == (0, None)
    store.save(keys[1], encode_weights([np.ones(2, dtype=np.float32)]))
    first, weights = latest_checkpoint(keys, store)
    assert first == 2
    assert weights is not None
    np.testing.assert_array_equal(weights[0], np.ones(2, dtype=np.float32))


def test_the_training_hash_ignores_what_acts_after_training_and_keeps_earlier_keys() -> None:
    params = FederationParams(num_groups=2, local_epochs=3)
    finishing = params.model_copy(
        update={
            "erasure": params.erasure.model_copy(
                update={"finish_rounds": 2, "granularity": "layer"}
            )
        }
    )
    # The digest the version before `finish_rounds` gave these params: checkpoints saved
    # by it keep their keys.
    before = "507b5837ce4eed8257f681b6e8141369f5b50cfd2bf532907d47742b8750b22c"
    assert training_hash(params, 784, 10) == before
    assert training_hash(finishing, 784, 10) == before
    assert training_hash(params.model_copy(update={"local_epochs": 2}), 784, 10) != before

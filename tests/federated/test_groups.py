"""Client groups: keyed, stable, balanced assignment; round keys; checkpoint resume."""

from __future__ import annotations

from pydantic import SecretStr

from tests.federated.conftest import KEY
from unlearn_ops.federated.client import weights_hash
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import FederatedData
from unlearn_ops.federated.groups import (
    assign_groups,
    decode_weights,
    encode_weights,
    hash_client_id,
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

"""Client groups (KNOT, INFOCOM 2023): keyed-hash assignment, per-group FedAvg, round checkpoints.

SISA at the client level: clients are split into G groups, each group federates on its own
with a checkpoint after every round, and the served model averages the groups'
probabilities. The checkpoint key of round r chains the key of round r-1 with the keyed
hashes and data digests of the clients that trained in round r (as SISA's stage keys chain
slices), so removing a client who joined at round j changes the keys of rounds j.. only:
its group resumes from the last checkpoint before it joined, every other group is untouched.

Clients are named in keys, records and averaging order by :func:`hash_client_id` (an
HMAC with the workspace's id-hash key), never in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from unlearn_ops.federated.averaging import federated_average
from unlearn_ops.federated.client import LocalResult, Weights, initial_weights, local_update
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import ClientData
from unlearn_ops.sisa.checkpoints import CheckpointStore
from unlearn_ops.sisa.hashing import digest_text

__all__ = [
    "GroupRun",
    "RoundEvent",
    "RoundObserver",
    "assign_groups",
    "decode_weights",
    "encode_weights",
    "finish_round",
    "hash_client_id",
    "latest_checkpoint",
    "member_round_keys",
    "round_keys",
    "train_group",
    "training_hash",
]


def hash_client_id(client_id: str, key: str) -> str:
    """Keyed hash of a client id: HMAC-SHA256 of `client:<id>` under the id-hash key.

    Equal to `Settings.hash_record_id(f"client:{client_id}")` for the same key, so a
    workspace's ledgers and a federation's records name a client the same way.
    """
    return hmac.new(key.encode(), f"client:{client_id}".encode(), hashlib.sha256).hexdigest()


def assign_groups(
    client_ids: Sequence[str],
    num_groups: int,
    key: str,
    existing: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Each client's group: clients already placed keep theirs; new ones are placed by hash.

    New clients are taken in the order of their keyed hash and each goes to the group with
    fewest clients (ties to the group its hash points at, then the lowest index), so groups
    stay balanced, the assignment depends on no clear id, and a client joining later never
    moves one placed before (its group's checkpoints stay valid).

    Args:
        client_ids: the federation's clients.
        num_groups: G.
        key: the id-hash key.
        existing: assignment so far (client id -> group); kept as it is.

    Raises:
        ValueError: G below 1, or an existing group outside 0..G-1.
    """
    if num_groups < 1:
        raise ValueError(f"num_groups must be at least 1, got {num_groups}")
    assignment = dict(existing or {})
    if any(not 0 <= g < num_groups for g in assignment.values()):
        raise ValueError(f"an existing group lies outside 0..{num_groups - 1}")
    sizes = [0] * num_groups
    for group in assignment.values():
        sizes[group] += 1
    newcomers = sorted(
        (hash_client_id(c, key), c) for c in dict.fromkeys(client_ids) if c not in assignment
    )
    for hashed, client_id in newcomers:
        preferred = int(hashed[:16], 16) % num_groups
        group = min(range(num_groups), key=lambda g: (sizes[g], g != preferred, g))
        assignment[client_id] = group
        sizes[group] += 1
    return assignment


def training_hash(params: FederationParams, num_features: int, num_classes: int) -> str:
    """Digest of everything besides the data that a group's weights depend on."""
    # `finish_rounds` and `granularity` (added later) act only after training: left out, so
    # that the keys of checkpoints saved before they existed stay the same.
    dumped = params.model_dump(mode="json", exclude={"erasure": {"finish_rounds", "granularity"}})
    text = json.dumps({"params": dumped, "shape": [num_features, num_classes]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def round_keys(
    group_id: int,
    clients: Sequence[ClientData],
    join_rounds: Mapping[str, int],
    *,
    rounds: int,
    training: str,
    key: str,
) -> list[str]:
    """The checkpoint key after each round of a group (round r trained the clients joined by r)."""
    members = [
        (hash_client_id(c.client_id, key), c.digest(), join_rounds.get(c.client_id, 0))
        for c in clients
    ]
    return member_round_keys(group_id, members, rounds=rounds, training=training)


def member_round_keys(
    group_id: int, members: Sequence[tuple[str, str, int]], *, rounds: int, training: str
) -> list[str]:
    """:func:`round_keys` from `(client hash, data digest, join round)` per member.

    For a server that never sees the clients' tables: in a Flower deployment each client
    reports its keyed hash and :meth:`ClientData.digest` (its data's digest, which names
    no record), and the server keys its checkpoints with them.
    """
    entries = sorted((joined, hashed, digest) for hashed, digest, joined in members)
    previous = digest_text("federated-init", training, str(group_id))
    keys: list[str] = []
    for round_number in range(rounds):
        trained = [f"{h}:{d}" for joined, h, d in entries if joined <= round_number]
        previous = digest_text("round", previous, str(round_number), *trained)
        keys.append(previous)
    return keys


def encode_weights(weights: Weights) -> bytes:
    """The bytes a checkpoint store keeps for a list of arrays (numpy's `.npz`, no pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, *weights)
    return buffer.getvalue()


def decode_weights(data: bytes) -> Weights:
    """Arrays back from :func:`encode_weights`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


@dataclass(frozen=True)
class RoundEvent:
    """One finished round of a group, as observers see it.

    Attributes:
        group_id: the group.
        round_number: the round (0-based).
        start_weights: the group model the clients started from.
        results: each participant's result, by client id, in averaging order.
        weights: the new group model (FedAvg of the results).
    """

    group_id: int
    round_number: int
    start_weights: Weights
    results: Mapping[str, LocalResult]
    weights: Weights


RoundObserver = Callable[[RoundEvent], None]
"""Called after every trained round (not for rounds restored from checkpoints)."""


@dataclass
class GroupRun:
    """A group's federated training: its final model, checkpoint keys and cost.

    Attributes:
        group_id: the group.
        weights: the model after the last round.
        round_keys: checkpoint key after each round.
        client_hashes: keyed hashes of the group's clients.
        resumed_from_round: first round actually trained (`rounds` when all were restored).
        client_rounds: local trainings run (clients x rounds): the compute measure.
        seconds: wall time.
    """

    group_id: int
    weights: Weights
    round_keys: list[str]
    client_hashes: list[str]
    resumed_from_round: int
    client_rounds: int
    seconds: float
    metrics: list[dict[str, float]] = field(default_factory=list)


def finish_round(
    group_id: int,
    round_number: int,
    start_weights: Weights,
    results: Mapping[str, LocalResult],
    *,
    key: str,
    observers: Sequence[RoundObserver] = (),
) -> Weights:
    """FedAvg of a round's results in keyed-hash order, then the observers: a server's round.

    What a Flower ServerApp calls with its clients' replies (client id -> result) to get
    the same bits as the simulation engine: the order of summation is the order of the
    clients' keyed hashes, whatever order the replies arrived in. A round without results
    keeps the model.
    """
    ordered = {c: results[c] for c in sorted(results, key=lambda c: hash_client_id(c, key))}
    weights = (
        federated_average([(r.weights, r.num_examples) for r in ordered.values()])
        if ordered
        else start_weights
    )
    event = RoundEvent(group_id, round_number, start_weights, ordered, weights)
    for observer in observers:
        observer(event)
    return weights


def latest_checkpoint(keys: Sequence[str], store: CheckpointStore) -> tuple[int, Weights | None]:
    """(first round to train, weights to start it from) given a group's round keys.

    The last round whose key the store holds, plus one, and its weights; `(0, None)`
    when none is held (start from :func:`~unlearn_ops.federated.client.initial_weights`).
    """
    for round_number in range(len(keys) - 1, -1, -1):
        if store.contains(keys[round_number]):
            return round_number + 1, decode_weights(store.load(keys[round_number]))
    return 0, None


def train_group(
    group_id: int,
    clients: Sequence[ClientData],
    params: FederationParams,
    *,
    num_classes: int,
    key: str,
    join_rounds: Mapping[str, int] | None = None,
    store: CheckpointStore | None = None,
    observers: Sequence[RoundObserver] = (),
) -> GroupRun:
    """Federate one group for `params.rounds` rounds, resuming from the store's checkpoints.

    Round r trains every client that joined by round r (in the order of their keyed
    hashes) from the group model and averages the results (FedAvg). With a store, the
    model after each round is saved under its key, and training resumes after the last
    round whose key the store holds.

    Raises:
        ValueError: the group has no client (a group left empty keeps no model).
    """
    if not clients:
        raise ValueError(f"group {group_id} has no client")
    started = time.perf_counter()
    joins = dict(join_rounds or {})
    num_features = int(clients[0].features.shape[1])
    keys = round_keys(
        group_id,
        clients,
        joins,
        rounds=params.rounds,
        training=training_hash(params, num_features, num_classes),
        key=key,
    )
    ordered = sorted(clients, key=lambda c: hash_client_id(c.client_id, key))
    weights = initial_weights(params, num_features, num_classes, group_id=group_id)
    first = 0
    if store is not None:
        first, restored = latest_checkpoint(keys, store)
        weights = weights if restored is None else restored
    client_rounds = 0
    metrics: list[dict[str, float]] = []
    for round_number in range(first, params.rounds):
        members = [c for c in ordered if joins.get(c.client_id, 0) <= round_number]
        results = {
            c.client_id: local_update(
                weights, c, params, num_classes=num_classes, round_number=round_number
            )
            for c in members
        }
        client_rounds += len(members)
        weights = finish_round(
            group_id, round_number, weights, results, key=key, observers=observers
        )
        if results:
            total = sum(r.num_examples for r in results.values())
            loss = sum(r.metrics["train_loss"] * r.num_examples for r in results.values())
            metrics.append({"round": float(round_number), "train_loss": loss / total})
        if store is not None:
            store.save(keys[round_number], encode_weights(weights))
    return GroupRun(
        group_id=group_id,
        weights=weights,
        round_keys=keys,
        client_hashes=[hash_client_id(c.client_id, key) for c in ordered],
        resumed_from_round=first,
        client_rounds=client_rounds,
        seconds=time.perf_counter() - started,
        metrics=metrics,
    )

"""The in-process simulation engine: a federation run round by round, clients in a fixed order.

No Flower here: every group trains its clients one after the other in this process (the
engine the benchmark and most tests run on), with the same functions a Flower ServerApp
and ClientApp call in a deployment. Observers see every round (stored updates for
FedEraser, poisoning detection); the served model averages the groups' probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unlearn_ops.federated.client import predict_proba, weights_hash
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import ClientData, FederatedData
from unlearn_ops.federated.groups import (
    GroupRun,
    RoundObserver,
    assign_groups,
    hash_client_id,
    train_group,
)
from unlearn_ops.sisa.checkpoints import CheckpointStore

__all__ = ["FederationRun", "class_recall", "run_federation", "train_groups"]


@dataclass
class FederationRun:
    """A trained federation: the group models and how clients were placed.

    Attributes:
        params: the federation's params.
        num_classes: classes of the task.
        assignment: client id -> group (in memory only; :meth:`record` keeps hashes).
        join_rounds: client id -> the round it joined.
        groups: group id -> its run.
        key: the id-hash key the client hashes were made with.
    """

    params: FederationParams
    num_classes: int
    assignment: dict[str, int]
    join_rounds: dict[str, int]
    groups: dict[int, GroupRun]
    key: str

    @property
    def client_rounds(self) -> int:
        """Local trainings run by the groups' last training (clients x rounds)."""
        return sum(g.client_rounds for g in self.groups.values())

    @property
    def seconds(self) -> float:
        """Wall time of the groups' last training."""
        return sum(g.seconds for g in self.groups.values())

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """The served model: mean of the groups' class probabilities."""
        probabilities = [
            predict_proba(g.weights, features, self.params, self.num_classes)
            for _, g in sorted(self.groups.items())
        ]
        return np.asarray(np.mean(probabilities, axis=0))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted classes of the served model."""
        return np.asarray(self.predict_proba(features).argmax(axis=1), dtype=np.int64)

    def record(self) -> dict[str, Any]:
        """What may be persisted: groups, join rounds and weights hashes by keyed client hash."""
        return {
            "num_groups": self.params.num_groups,
            "clients": {
                hash_client_id(c, self.key): {"group": g, "join_round": self.join_rounds.get(c, 0)}
                for c, g in sorted(self.assignment.items())
            },
            "groups": {
                str(gid): {
                    "weights_hash": weights_hash(g.weights),
                    "last_round_key": g.round_keys[-1],
                }
                for gid, g in sorted(self.groups.items())
            },
        }


def train_groups(
    clients: Sequence[ClientData],
    params: FederationParams,
    assignment: Mapping[str, int],
    group_ids: Sequence[int],
    *,
    num_classes: int,
    key: str,
    join_rounds: Mapping[str, int] | None = None,
    store: CheckpointStore | None = None,
    observers: Sequence[RoundObserver] = (),
) -> dict[int, GroupRun]:
    """Train the named groups, each with its assigned clients, one after the other."""
    runs: dict[int, GroupRun] = {}
    for group_id in sorted(group_ids):
        members = [c for c in clients if assignment.get(c.client_id) == group_id]
        if members:
            runs[group_id] = train_group(
                group_id,
                members,
                params,
                num_classes=num_classes,
                key=key,
                join_rounds=join_rounds,
                store=store,
                observers=observers,
            )
    return runs


def run_federation(
    data: FederatedData,
    params: FederationParams,
    *,
    key: str,
    join_rounds: Mapping[str, int] | None = None,
    assignment: Mapping[str, int] | None = None,
    store: CheckpointStore | None = None,
    observers: Sequence[RoundObserver] = (),
) -> FederationRun:
    """Train a federation of `data.clients` from scratch (or from the store's checkpoints).

    Args:
        data: the clients and the task.
        params: rounds, local training, model, G.
        key: the id-hash key (client hashes, group assignment).
        join_rounds: client id -> round it joins (0 when absent).
        assignment: client id -> group; by :func:`assign_groups` when absent. A clean
            oracle is trained with the assignment its clients have in the attacked one.
        store: where round checkpoints are kept and resumed from.
        observers: called after every trained round.
    """
    ids = [c.client_id for c in data.clients]
    placed = dict(assignment) if assignment is not None else {}
    placed = assign_groups(
        ids, params.num_groups, key, existing={c: placed[c] for c in ids if c in placed}
    )
    groups = train_groups(
        data.clients,
        params,
        placed,
        range(params.num_groups),
        num_classes=data.num_classes,
        key=key,
        join_rounds=join_rounds,
        store=store,
        observers=observers,
    )
    return FederationRun(
        params=params,
        num_classes=data.num_classes,
        assignment={c: placed[c] for c in ids},
        join_rounds={c: (join_rounds or {}).get(c, 0) for c in ids},
        groups=groups,
        key=key,
    )


def class_recall(predictions: np.ndarray, labels: np.ndarray, class_id: int) -> float:
    """Share of `class_id`'s examples predicted as `class_id` (NaN when there are none)."""
    mask = labels == class_id
    return float(np.mean(predictions[mask] == class_id)) if mask.any() else float("nan")

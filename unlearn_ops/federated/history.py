"""The server's stored client updates, kept every Delta rounds for FedEraser.

FedEraser (Liu et al., IWQoS 2021, section IV-A) has the server retain, at rounds
t_0 = 0, Delta, 2 Delta, ..., the global model the clients started from and each client's
update; unlearning later replays those rounds with calibrated updates. Clients are kept
under their keyed hash only, like everything a federation persists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unlearn_ops.federated.averaging import weights_delta
from unlearn_ops.federated.client import Weights
from unlearn_ops.federated.groups import RoundEvent, hash_client_id

__all__ = ["StoredRound", "UpdateHistory"]


@dataclass(frozen=True)
class StoredRound:
    """One retained round of a group.

    Attributes:
        round_number: the round.
        start_weights: the group model its clients started from.
        updates: client hash -> (update = new weights - start weights, examples).
    """

    round_number: int
    start_weights: Weights
    updates: dict[str, tuple[Weights, int]]


@dataclass
class UpdateHistory:
    """A round observer that keeps every `interval`-th round of every group.

    Attributes:
        key: the id-hash key (clients are stored by hash).
        interval: Delta.
        rounds: group id -> retained rounds, in order.
    """

    key: str
    interval: int = 1
    rounds: dict[int, list[StoredRound]] = field(default_factory=dict)

    def __call__(self, event: RoundEvent) -> None:
        """Retain the round when its number is a multiple of the interval."""
        if event.round_number % self.interval:
            return
        updates = {
            hash_client_id(client_id, self.key): (
                weights_delta(result.weights, event.start_weights),
                result.num_examples,
            )
            for client_id, result in event.results.items()
        }
        stored = StoredRound(event.round_number, [w.copy() for w in event.start_weights], updates)
        self.rounds.setdefault(event.group_id, []).append(stored)

    def stored_bytes(self) -> int:
        """Bytes of arrays held: the storage FedEraser costs the server."""
        total = 0
        for stored in (s for rounds in self.rounds.values() for s in rounds):
            total += sum(w.nbytes for w in stored.start_weights)
            total += sum(w.nbytes for update, _ in stored.updates.values() for w in update)
        return total

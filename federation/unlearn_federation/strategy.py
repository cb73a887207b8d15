"""GroupFedAvg: FedAvg over one client group, in a fixed order, keeping every update.

Flower's FedAvg samples nodes and sums replies in arrival order; a removal certificate
needs neither. This subclass trains exactly the group's nodes, sorts replies by partition
id, averages with :func:`unlearn_ops.federated.averaging.federated_average` (the same
arithmetic as the simulation engine), and writes, per round, the group model and each
client's update (FedEraser keeps them; KNOT restarts a group from a round checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from unlearn_ops.federated.averaging import federated_average, weights_delta


class GroupFedAvg(FedAvg):
    """FedAvg restricted to one group's nodes, deterministic, recording each round.

    Args:
        group_id: the group.
        nodes: partition id -> node id of the group's clients.
        output: the group's folder (`round-RRR.npz`, `updates/round-RRR/partition-PPP.npz`).
    """

    def __init__(self, group_id: int, nodes: Mapping[int, int], output: Path) -> None:
        size = len(nodes)
        super().__init__(min_train_nodes=size, min_available_nodes=size, fraction_evaluate=0.0)
        self.group_id = group_id
        self.nodes = dict(sorted(nodes.items()))
        self.output = output
        self._sent: list[np.ndarray] = []

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """One train message per client of the group, in partition order."""
        self._sent = arrays.to_numpy_ndarrays()
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, list(self.nodes.values()), MessageType.TRAIN)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The example-weighted mean of the replies sorted by partition; all recorded.

        A missing or failed client fails the round: a group model that silently lacks a
        client would not be the federation the certificate describes.
        """
        valid, errors = self._check_and_log_replies(list(replies), is_train=True)
        if errors or len(valid) != len(self.nodes):
            raise RuntimeError(
                f"group {self.group_id} round {server_round}: {len(valid)} of "
                f"{len(self.nodes)} clients replied ({len(errors)} failed)"
            )
        by_partition = sorted(
            valid,
            key=lambda m: int(m.content["metrics"]["partition-id"]),  # type: ignore[arg-type]
        )
        results = []
        updates = self.output / "updates" / f"round-{server_round:03d}"
        updates.mkdir(parents=True, exist_ok=True)
        for message in by_partition:
            partition = int(message.content["metrics"]["partition-id"])  # type: ignore[arg-type]
            weights = message.content["arrays"].to_numpy_ndarrays()
            count = int(message.content["metrics"]["num-examples"])  # type: ignore[arg-type]
            results.append((weights, count))
            delta = weights_delta(weights, self._sent)
            np.savez(updates / f"partition-{partition:03d}.npz", *delta, num_examples=count)
        averaged = federated_average(results)
        np.savez(self.output / f"round-{server_round:03d}.npz", *averaged)
        metrics = self.train_metrics_aggr_fn([m.content for m in by_partition], "num-examples")
        return ArrayRecord(averaged), metrics

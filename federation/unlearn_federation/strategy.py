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
from unlearn_ops.federated.calibration import Granularity, calibrate, stretch


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


def _load(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return [
            archive[f"arr_{i}"] for i in range(len(archive.files) - ("num_examples" in archive))
        ]


class GroupFedEraser(GroupFedAvg):
    """FedEraser (Liu et al., IWQoS 2021) for one group, from what GroupFedAvg stored.

    Each retained round, the remaining clients train a few calibration epochs from the
    rebuilt model; each client's update keeps its fresh direction and takes the norm of its
    stored update (section IV; per output unit or per array, :mod:`.calibration`); the
    calibrated updates are averaged and, when rounds were skipped (interval > 1), stretched
    by the length the global model moved over the interval against the retained round's
    own FedAvg step. Rounds after `last_round` are the finishing rounds: ordinary FedAvg
    of the remaining clients from the replay's result. Provisional: no certificate.

    Args:
        group_id: the group.
        nodes: partition id -> node id of the remaining clients.
        output: the new run's group folder.
        history: the group folder of the training run whose updates were stored.
        retained: the retained rounds (1-based), in order.
        initial: the group's initial model (the start of round 1).
        last_round: the training run's last round.
        stretch: `erasure.scale_to_interval` of the params.
        granularity: `erasure.granularity` of the params.
    """

    def __init__(
        self,
        group_id: int,
        nodes: Mapping[int, int],
        output: Path,
        *,
        history: Path,
        retained: list[int],
        initial: list[np.ndarray],
        last_round: int,
        stretch: bool = True,
        granularity: Granularity = "unit",
    ) -> None:
        super().__init__(group_id, nodes, output)
        self.history = history
        self.retained = retained
        self.initial = initial
        self.last_round = last_round
        self.stretch = stretch
        self.granularity: Granularity = granularity

    def _model_before(self, server_round: int) -> list[np.ndarray]:
        if server_round <= 1:
            return self.initial
        return _load(self.history / f"round-{server_round - 1:03d}.npz")

    def _stretch(self, step: list[np.ndarray], server_round: int) -> list[np.ndarray]:
        later = [r for r in self.retained if r > server_round]
        end_round = later[0] - 1 if later else self.last_round
        start, end = (
            self._model_before(server_round),
            _load(self.history / f"round-{end_round:03d}.npz"),
        )
        stored = []
        for path in sorted((self.history / "updates" / f"round-{server_round:03d}").glob("*.npz")):
            with np.load(path, allow_pickle=False) as archive:
                stored.append((_load(path), int(archive["num_examples"])))
        return stretch(step, start, end, federated_average(stored))

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The calibrated updates' weighted mean, applied to the model sent this round."""
        if server_round > self.last_round:  # a finishing round
            return super().aggregate_train(server_round, replies)
        valid, errors = self._check_and_log_replies(list(replies), is_train=True)
        if errors or len(valid) != len(self.nodes):
            raise RuntimeError(f"group {self.group_id} calibration round {server_round} failed")
        stored_dir = self.history / "updates" / f"round-{server_round:03d}"
        calibrated = []
        for message in sorted(valid, key=lambda m: int(m.content["metrics"]["partition-id"])):  # type: ignore[arg-type]
            partition = int(message.content["metrics"]["partition-id"])  # type: ignore[arg-type]
            fresh = weights_delta(message.content["arrays"].to_numpy_ndarrays(), self._sent)
            stored = _load(stored_dir / f"partition-{partition:03d}.npz")
            count = int(message.content["metrics"]["num-examples"])  # type: ignore[arg-type]
            calibrated.append((calibrate(stored, fresh, self.granularity), count))
        step = federated_average(calibrated)
        if self.stretch:
            step = self._stretch(step, server_round)
        weights = [(w + s).astype(w.dtype) for w, s in zip(self._sent, step, strict=True)]
        self.output.mkdir(parents=True, exist_ok=True)
        np.savez(self.output / f"round-{server_round:03d}.npz", *weights)
        return ArrayRecord(weights), None

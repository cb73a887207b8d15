"""The federated-unlearning benchmark: a label-flipping attack, its detection, and removal.

Engine: the in-process simulation engine (:mod:`unlearn_ops.federated.simulation`; no
Flower, clients trained one after the other in a fixed order on one thread), running the
same strategy functions a Flower deployment calls. Per seed, on the MNIST-5k stand-in split
across clients by Dirichlet(alpha):

- the attack: the `attackers` clients holding the most source-class examples are given
  `attacker_source_share` of the clients' source-class rows (taken evenly from the honest
  clients) and relabel them as the target class; source-class recall of the served model
  against a clean federation trained without them (the oracle);
- detection: FLTrust trust (root set held by the server) and FoolsGold weights per round,
  :func:`~unlearn_ops.federated.detection.flag_clients`; the round each attacker is flagged,
  and honest clients flagged (false positives);
- exact removal: each attacker removed by its own request, its group retrained from the
  last checkpoint before it joined; cost in client-rounds against a full federation
  retrain without it; the final groups compared bit for bit with the oracle's;
- FedEraser: both attackers removed at once by calibration, then `finish_rounds` ordinary
  rounds of the remaining clients in the affected groups; wall time and accuracy
  against the full retrain (the oracle), cost in client-epochs.

Times are wall-clock and CPU seconds of this process on a shared machine: wall time is
noisy (the FedEraser speed-up target is judged on CPU seconds, the engine being
one-threaded); the client-round and client-epoch counts are the machine-independent costs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from unlearn_ops.federated.client import weights_hash
from unlearn_ops.federated.config import ErasureParams, FederationParams
from unlearn_ops.federated.data import (
    ClientData,
    FederatedData,
    flip_labels,
    load_mnist_standin,
    make_federated_data,
)
from unlearn_ops.federated.detection import PoisoningMonitor, flag_clients
from unlearn_ops.federated.groups import encode_weights
from unlearn_ops.federated.history import UpdateHistory
from unlearn_ops.federated.removal import erase_clients_approximately, remove_clients_exactly
from unlearn_ops.federated.simulation import FederationRun, class_recall, run_federation
from unlearn_ops.params import ModelParams
from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore

__all__ = [
    "ENGINE",
    "FEDERATED_PARAMS",
    "federated_markdown",
    "run_federated_benchmark",
]

ENGINE = "in-process simulation engine (unlearn_ops.federated.simulation; no Flower)"
SOURCE_CLASS = 3
TARGET_CLASS = 8
# Chosen on development seeds 100-104, not the evaluation seeds 0-4 (figures and reasons in
# docs/FEDERATED_UNLEARNING.md): sites with a similar case mix, attackers holding 75% of the
# source class (a referral centre), FLTrust flags at 0.7 of the median's mean trust.
ALPHA = 10.0
ATTACKER_SOURCE_SHARE: float | None = 0.75
TRUST_RATIO = 0.7
FINISH_ROUNDS = 1
FEDERATED_PARAMS = FederationParams(
    rounds=20,
    local_epochs=3,
    batch_size=32,
    learning_rate=0.05,
    model=ModelParams(name="mlp", hidden_sizes=(64,)),
    num_groups=2,
    # FedEraser's schedule: every 2nd round retained, 2 calibration epochs of the 3 local
    # ones (ratio 2/3): the client-epochs of Delta = 1 with 1 epoch, half the replayed
    # rounds and stored updates (dev-seed figures in docs/FEDERATED_UNLEARNING.md).
    erasure=ErasureParams(interval=2, calibration_epochs=2, finish_rounds=FINISH_ROUNDS),
)
DETECTION_ROUNDS = 5
BENCH_KEY = "federated-bench-key"


def _evaluate(run: FederationRun, data: FederatedData) -> dict[str, float]:
    predictions = run.predict(data.test_features)
    return {
        "accuracy": float(np.mean(predictions == data.test_labels)),
        "source_recall": class_recall(predictions, data.test_labels, SOURCE_CLASS),
    }


def _attackers(data: FederatedData, count: int) -> list[str]:
    held = [(-int(np.sum(c.labels == SOURCE_CLASS)), c.client_id) for c in data.clients]
    return [client_id for _, client_id in sorted(held)[:count]]


def _give_source_to_attackers(
    data: FederatedData, attackers: Sequence[str], share: float, seed: int
) -> FederatedData:
    """Move source-class rows from honest clients to the attackers until they hold `share`.

    Each honest client gives the same fraction of its source-class rows (chosen at random,
    seeded), dealt to the attackers in turn; nothing moves when the attackers already hold
    `share`. Models a site that sees many cases of one class (a referral centre).
    """
    held = {c.client_id: np.flatnonzero(c.labels == SOURCE_CLASS) for c in data.clients}
    total = sum(len(rows) for rows in held.values())
    owned = sum(len(held[a]) for a in attackers)
    honest_total = total - owned
    wanted = share * total - owned
    if wanted <= 0 or honest_total == 0:
        return data
    fraction = min(1.0, wanted / honest_total)
    rng = np.random.default_rng([seed, 13])
    moved_features: list[np.ndarray] = []
    moved_labels: list[np.ndarray] = []
    clients: list[ClientData] = []
    for client in data.clients:
        if client.client_id in attackers:
            clients.append(client)
            continue
        rows = held[client.client_id]
        give = rng.permutation(rows)[: round(fraction * len(rows))]
        keep = np.setdiff1d(np.arange(client.num_examples), give)
        moved_features.append(client.features[give])
        moved_labels.append(client.labels[give])
        clients.append(ClientData(client.client_id, client.features[keep], client.labels[keep]))
    features, labels = np.concatenate(moved_features), np.concatenate(moved_labels)
    turn = np.arange(len(labels)) % len(attackers)
    for index, client in enumerate(clients):
        if client.client_id in attackers:
            mine = turn == list(attackers).index(client.client_id)
            clients[index] = ClientData(
                client.client_id,
                np.concatenate([client.features, features[mine]]),
                np.concatenate([client.labels, labels[mine]]),
            )
    return data.with_clients(clients)


def _one_seed(
    features: np.ndarray,
    labels: np.ndarray,
    params: FederationParams,
    *,
    seed: int,
    num_clients: int,
    num_attackers: int,
    alpha: float,
    attacker_source_share: float | None = None,
    trust_ratio: float = TRUST_RATIO,
) -> dict[str, Any]:
    params = params.model_copy(update={"seed": seed})
    data = make_federated_data(
        features, labels, num_clients=num_clients, alpha=alpha, seed=seed, source="mnist-5k"
    )
    attackers = _attackers(data, num_attackers)
    if attacker_source_share is not None:
        data = _give_source_to_attackers(data, attackers, attacker_source_share, seed)
    attacked = data.with_clients(
        [
            flip_labels(c, source_class=SOURCE_CLASS, target_class=TARGET_CLASS)
            if c.client_id in attackers
            else c
            for c in data.clients
        ]
    )
    store = MemoryCheckpointStore()
    history = UpdateHistory(BENCH_KEY, params.erasure.interval)
    root = ClientData("server-root", data.root_features, data.root_labels)
    monitor = PoisoningMonitor(root, params, data.num_classes)
    started = time.perf_counter()
    poisoned = run_federation(
        attacked, params, key=BENCH_KEY, store=store, observers=[history, monitor]
    )
    poisoned_seconds = time.perf_counter() - started

    honest = data.with_clients([c for c in data.clients if c.client_id not in attackers])
    started, cpu_started = time.perf_counter(), time.process_time()
    oracle = run_federation(honest, params, key=BENCH_KEY, assignment=poisoned.assignment)
    oracle_seconds = time.perf_counter() - started
    oracle_cpu_seconds = time.process_time() - cpu_started

    flags = [
        f
        for f in flag_clients(monitor, trust_ratio=trust_ratio)
        if f.round_number < DETECTION_ROUNDS
    ]
    flagged = {f.client_id: f.round_number for f in flags}

    # Exact: one request per attacker, in order; each against a full retrain without it.
    run = poisoned
    exact_rows = []
    exact_seconds = 0.0
    for index, attacker in enumerate(attackers):
        removal = remove_clients_exactly(run, attacked.clients, [attacker], store=store)
        remaining = len(run.assignment) - 1
        full = params.rounds * remaining
        exact_rows.append(
            {
                "groups_retrained": removal.groups_retrained,
                "resumed_from_round": list(removal.resumed_from_round.values()),
                "client_rounds": removal.client_rounds,
                "full_retrain_client_rounds": full,
                "cost_ratio": removal.client_rounds / full,
                "request": index,
            }
        )
        exact_seconds += removal.seconds
        run = removal.run
    exact = run
    bit_equal = all(
        weights_hash(exact.groups[g].weights) == weights_hash(oracle.groups[g].weights)
        for g in oracle.groups
    ) and set(exact.groups) == set(oracle.groups)

    started, cpu_started = time.perf_counter(), time.process_time()
    erased = erase_clients_approximately(poisoned, attacked.clients, attackers, history)
    eraser_seconds = time.perf_counter() - started
    eraser_cpu_seconds = time.process_time() - cpu_started

    clean = _evaluate(oracle, data)
    attacked_metrics = _evaluate(poisoned, data)
    exact_metrics = _evaluate(exact, data)
    eraser_metrics = _evaluate(erased.run, data)
    retrain_epochs = params.rounds * (num_clients - num_attackers) * params.local_epochs
    return {
        "seed": seed,
        "attackers": attackers,
        "clean": clean,
        "attacked": attacked_metrics,
        "recall_drop": clean["source_recall"] - attacked_metrics["source_recall"],
        "flags": [
            {"client": f.client_id, "round": f.round_number, "trust": f.trust, "why": f.reasons}
            for f in flags
        ],
        "attackers_flagged_by_round": [flagged.get(a) for a in attackers],
        "trust_by_round": {str(r): s for r, s in monitor.trust.items()},
        "foolsgold_by_round": {str(r): s for r, s in monitor.foolsgold.items()},
        "false_positives": sorted(set(flagged) - set(attackers)),
        "exact": {
            **exact_metrics,
            "requests": exact_rows,
            "bit_equal_to_oracle": bit_equal,
            "seconds": exact_seconds,
        },
        "federaser": {
            **eraser_metrics,
            "client_epochs": erased.client_epochs,
            "retrain_client_epochs": retrain_epochs,
            "seconds": eraser_seconds,
            "cpu_seconds": eraser_cpu_seconds,
            "provisional": erased.provisional,
            "stored_megabytes": history.stored_bytes() / 1e6,
        },
        "oracle_seconds": oracle_seconds,
        "oracle_cpu_seconds": oracle_cpu_seconds,
        "poisoned_seconds": poisoned_seconds,
        "checkpoint_megabytes": sum(len(store.load(k)) for k in store.keys())  # noqa: SIM118
        / 1e6,
        "weights_megabytes": len(encode_weights(next(iter(oracle.groups.values())).weights)) / 1e6,
    }


def run_federated_benchmark(
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    num_clients: int = 10,
    num_attackers: int = 2,
    alpha: float = ALPHA,
    params: FederationParams = FEDERATED_PARAMS,
    attacker_source_share: float | None = ATTACKER_SOURCE_SHARE,
    trust_ratio: float = TRUST_RATIO,
) -> dict[str, Any]:
    """Run the federated benchmark over `seeds`; results per seed and the targets' verdicts.

    `attacker_source_share`: the attackers are given that share of the clients'
    source-class rows before flipping them (None: the Dirichlet split as drawn).
    """
    import torch

    torch.set_num_threads(1)
    features, labels = load_mnist_standin()
    rows = [
        _one_seed(
            features,
            labels,
            params,
            seed=seed,
            num_clients=num_clients,
            num_attackers=num_attackers,
            alpha=alpha,
            attacker_source_share=attacker_source_share,
            trust_ratio=trust_ratio,
        )
        for seed in seeds
    ]
    return {
        "engine": ENGINE,
        "setup": {
            "clients": num_clients,
            "attackers": num_attackers,
            "alpha": alpha,
            "attacker_source_share": attacker_source_share,
            "trust_ratio": trust_ratio,
            "source_class": SOURCE_CLASS,
            "target_class": TARGET_CLASS,
            "params": params.model_dump(mode="json"),
            "seeds": list(seeds),
        },
        "seeds": rows,
        "targets": _targets(rows, params.num_groups),
    }


def _targets(rows: list[dict[str, Any]], num_groups: int) -> dict[str, Any]:
    def worst(values: list[float]) -> float:
        return max(values) if values else float("nan")

    drop = min(r["recall_drop"] for r in rows)
    flagged_in_time = all(all(f is not None for f in r["attackers_flagged_by_round"]) for r in rows)
    false_positives = sum(len(r["false_positives"]) for r in rows)
    exact_gap = worst(
        [abs(r["exact"][m] - r["clean"][m]) for r in rows for m in ("accuracy", "source_recall")]
    )
    ratio = worst([q["cost_ratio"] for r in rows for q in r["exact"]["requests"]])
    # CPU seconds of this (one-threaded) process: on a machine shared with other jobs, wall
    # time swings with their load (the wall-clock ratio is reported beside it).
    speedups = [r["oracle_cpu_seconds"] / r["federaser"]["cpu_seconds"] for r in rows]
    wall_speedups = [r["oracle_seconds"] / r["federaser"]["seconds"] for r in rows]
    eraser_gap = worst(
        [
            abs(r["federaser"][m] - r["clean"][m])
            for r in rows
            for m in ("accuracy", "source_recall")
        ]
    )
    return {
        "attack_recall_drop_min": {"value": drop, "met": drop >= 0.20},
        "attackers_flagged_within_rounds": {"value": DETECTION_ROUNDS, "met": flagged_in_time},
        "false_positives": {"value": false_positives, "met": false_positives == 0},
        "exact_gap_to_oracle_max": {"value": exact_gap, "met": exact_gap <= 0.01},
        "exact_bit_equal": {
            "value": all(r["exact"]["bit_equal_to_oracle"] for r in rows),
            "met": all(r["exact"]["bit_equal_to_oracle"] for r in rows),
        },
        "exact_cost_ratio_max": {"value": ratio, "met": ratio <= 1 / num_groups},
        "federaser_speedup_min": {"value": min(speedups), "met": min(speedups) >= 2.0},
        "federaser_speedup_median": statistics.median(speedups),
        "federaser_wall_speedup_min": min(wall_speedups),
        "federaser_gap_to_retrain_max": {"value": eraser_gap, "met": eraser_gap <= 0.02},
    }


def federated_markdown(results: dict[str, Any]) -> str:
    """The benchmark as markdown: one row per seed, then the targets."""
    lines = [
        "",
        f"## Federated unlearning ({results['engine']})",
        "",
        "| seed | clean acc | clean recall | attacked recall | drop | flagged (round) "
        "| false pos. | exact acc | exact = oracle | exact cost / full | FedEraser acc "
        "| FedEraser recall | FedEraser speed-up (CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["seeds"]:
        ratios = ", ".join(f"{q['cost_ratio']:.2f}" for q in r["exact"]["requests"])
        flagged = ", ".join(str(f) for f in r["attackers_flagged_by_round"])
        speedup = r["oracle_cpu_seconds"] / r["federaser"]["cpu_seconds"]
        wall = r["oracle_seconds"] / r["federaser"]["seconds"]
        lines.append(
            f"| {r['seed']} | {r['clean']['accuracy']:.3f} | {r['clean']['source_recall']:.3f} "
            f"| {r['attacked']['source_recall']:.3f} | {r['recall_drop']:.3f} | {flagged} "
            f"| {len(r['false_positives'])} | {r['exact']['accuracy']:.3f} "
            f"| {r['exact']['bit_equal_to_oracle']} | {ratios} "
            f"| {r['federaser']['accuracy']:.3f} | {r['federaser']['source_recall']:.3f} "
            f"| {speedup:.1f}x (wall {wall:.1f}x) |"
        )
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for name, target in results["targets"].items():
        if isinstance(target, dict):
            lines.append(f"| {name} | {target['value']} | {target['met']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - a developer's entry point
    import json
    import sys

    first = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else FEDERATED_PARAMS.rounds
    out = run_federated_benchmark(
        seeds=range(first, first + count),
        params=FEDERATED_PARAMS.model_copy(update={"rounds": rounds}),
    )
    print(federated_markdown(out))
    json.dump(out, sys.stdout, indent=1, default=str)

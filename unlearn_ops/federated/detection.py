"""Poisoned-client detection from the clients' updates: FLTrust trust and FoolsGold similarity.

FLTrust (Cao et al., NDSS 2021, section III): the server trains on a small clean root set
from the same global model; a client's trust score is the ReLU of the cosine between its
update and the server's, and its update is rescaled to the server update's norm before
aggregation. FoolsGold (Fung et al., arXiv 1808.04866, algorithm 1): clients whose update
*histories* point the same way (sybils, coordinated flippers pushing one class to another)
are down-weighted; the similarity is taken on the output layer, the "indicative features"
of a label-flipping attack (section 5).

:class:`PoisoningMonitor` is a round observer that records both scores per round;
:func:`flag_clients` turns them into flags (a client id, its scores, the round).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from unlearn_ops.federated.averaging import weights_delta
from unlearn_ops.federated.client import Weights, local_update
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import ClientData
from unlearn_ops.federated.groups import RoundEvent

__all__ = [
    "ClientFlag",
    "PoisoningMonitor",
    "flag_clients",
    "fltrust_scores",
    "foolsgold_weights",
    "rescale_to_reference",
]


def _flat(update: Weights) -> np.ndarray:
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in update])


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # Elementwise, not BLAS: a BLAS call's thread start-up dominates on small vectors.
    return float(np.multiply(a, b).sum())


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = float(np.sqrt(_dot(a, a) * _dot(b, b)))
    return _dot(a, b) / norms if norms > 0 else 0.0


def fltrust_scores(updates: Mapping[str, Weights], server_update: Weights) -> dict[str, float]:
    """FLTrust trust score per client: ReLU(cosine(client update, server update))."""
    reference = _flat(server_update)
    return {c: max(0.0, _cosine(_flat(u), reference)) for c, u in updates.items()}


def rescale_to_reference(update: Weights, reference: Weights) -> Weights:
    """The update scaled to the reference update's norm (FLTrust's magnitude normalisation)."""
    flat = _flat(update)
    norm = float(np.sqrt(_dot(flat, flat)))
    target = _flat(reference)
    scale = float(np.sqrt(_dot(target, target))) / norm if norm > 0 else 0.0
    return [(w * scale).astype(w.dtype) for w in update]


def foolsgold_weights(
    histories: Mapping[str, np.ndarray], confidence: float = 1.0
) -> dict[str, float]:
    """FoolsGold learning-rate weight per client in [0, 1] from its update history.

    Pairwise cosine similarity of histories, "pardoning" of honest clients that merely
    resemble a sybil (similarities scaled by the ratio of the clients' largest
    similarities), weight `1 - max similarity`, rescaled so the largest is 1 and passed
    through FoolsGold's logit with `confidence` (kappa). Sybils get weights near 0.
    """
    clients = sorted(histories)
    if len(clients) < 2:
        return dict.fromkeys(clients, 1.0)
    matrix = np.stack([np.asarray(histories[c], dtype=np.float64) for c in clients])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = matrix / np.where(norms > 0, norms, 1.0)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    largest = similarity.max(axis=1)
    np.fill_diagonal(similarity, 0.0)
    count = len(clients)
    for i in range(count):
        for j in range(count):
            if i != j and largest[i] < largest[j] and largest[j] > 0:
                similarity[i, j] *= largest[i] / largest[j]
    np.fill_diagonal(similarity, -np.inf)
    weights = np.clip(1.0 - similarity.max(axis=1), 0.0, 1.0)
    top = weights.max()
    weights = weights / top if top > 0 else weights
    weights[weights >= 1.0] = 0.99
    with np.errstate(divide="ignore"):
        logits = confidence * (np.log(weights / (1.0 - weights)) + 0.5)
    weights = np.clip(np.nan_to_num(logits, neginf=0.0, posinf=1.0), 0.0, 1.0)
    return {c: float(w) for c, w in zip(clients, weights, strict=True)}


@dataclass(frozen=True)
class ClientFlag:
    """A client found poisoning.

    Attributes:
        client_id: the client (in memory; persist its keyed hash).
        round_number: the round it was first flagged at.
        trust: its mean FLTrust trust score over the rounds seen by then.
        foolsgold: its FoolsGold weight at that round.
        reasons: which detectors flagged it (`fltrust`, `foolsgold`).
    """

    client_id: str
    round_number: int
    trust: float
    foolsgold: float
    reasons: tuple[str, ...]


@dataclass
class PoisoningMonitor:
    """A round observer recording each client's FLTrust trust and FoolsGold weight per round.

    Per group and round, the server trains the group's incoming model on its root set with
    the clients' local-training settings (the FLTrust reference update). Histories for
    FoolsGold are the sums of each client's output-layer updates; trust is taken on the
    output layer too (the last `output_arrays` arrays: weight and bias).

    Attributes:
        root: the server's clean root set.
        params: the federation's params (local training of the reference update).
        num_classes: classes of the task.
        trust: round -> client id -> trust score.
        foolsgold: round -> client id -> FoolsGold weight.
    """

    root: ClientData
    params: FederationParams
    num_classes: int
    output_arrays: int = 2
    trust: dict[int, dict[str, float]] = field(default_factory=dict)
    foolsgold: dict[int, dict[str, float]] = field(default_factory=dict)
    _histories: dict[str, np.ndarray] = field(default_factory=dict)

    def __call__(self, event: RoundEvent) -> None:
        """Score the round's updates against the server's root-set update."""
        server = local_update(
            event.start_weights,
            self.root,
            self.params,
            num_classes=self.num_classes,
            round_number=event.round_number,
        )
        reference = weights_delta(server.weights, event.start_weights)
        updates = {
            c: weights_delta(r.weights, event.start_weights) for c, r in event.results.items()
        }
        # Trust on the output layer: a label flip shows in the class rows, while the
        # lower layers mostly reflect how each client's (non-IID) inputs differ.
        tail = -self.output_arrays
        scores = fltrust_scores({c: u[tail:] for c, u in updates.items()}, reference[tail:])
        self.trust.setdefault(event.round_number, {}).update(scores)
        for client_id, update in updates.items():
            output = _flat(update[tail:])
            previous = self._histories.get(client_id)
            self._histories[client_id] = output if previous is None else previous + output
        members = {c: self._histories[c] for c in updates}
        self.foolsgold.setdefault(event.round_number, {}).update(foolsgold_weights(members))


def flag_clients(
    monitor: PoisoningMonitor,
    *,
    trust_ratio: float = 0.6,
    foolsgold_floor: float | None = None,
    warmup_rounds: int = 1,
    min_rounds: int = 3,
) -> list[ClientFlag]:
    """Clients flagged as poisoning, each at the first round a detector caught it.

    FLTrust flags a client when its mean trust over the rounds since `warmup_rounds`
    (at least `min_rounds` of them) falls below `trust_ratio` times the median client's:
    relative, because under non-IID data every client's cosine to the root-set update is
    low, and averaged, because one round's cosine is noisy. FoolsGold flags a client whose
    weight falls to `foolsgold_floor` (off by default: on Dirichlet-split clients, honest
    clients with alike data look like sybils; docs/FEDERATED_UNLEARNING.md has the figures).
    The first round is skipped: every client starts from the same untrained model.
    """
    flags: dict[str, ClientFlag] = {}
    totals: dict[str, list[float]] = {}
    for round_number in sorted(monitor.trust):
        if round_number < warmup_rounds:
            continue
        scores = monitor.trust[round_number]
        for client_id, score in scores.items():
            totals.setdefault(client_id, []).append(score)
        means = {c: float(np.mean(v)) for c, v in totals.items() if c in scores}
        median = float(np.median(list(means.values()))) if means else 0.0
        weights = monitor.foolsgold.get(round_number, {})
        for client_id, mean in means.items():
            if client_id in flags:
                continue
            reasons = []
            if len(totals[client_id]) >= min_rounds and mean < trust_ratio * median:
                reasons.append("fltrust")
            weight = weights.get(client_id, 1.0)
            if foolsgold_floor is not None and weight <= foolsgold_floor:
                reasons.append("foolsgold")
            if reasons:
                flags[client_id] = ClientFlag(client_id, round_number, mean, weight, tuple(reasons))
    return sorted(flags.values(), key=lambda f: (f.round_number, f.client_id))

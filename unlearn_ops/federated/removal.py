"""Removing clients from a trained federation: exactly by group retraining, or by FedEraser.

Exact (KNOT, INFOCOM 2023): only the groups of the removed clients retrain, each from the
last round checkpoint before the earliest of them joined (the round keys of earlier rounds
do not change), with the clients that remain; every other group keeps its model. The
certificate trains each affected group afresh, without the removed clients and without
checkpoints, and compares the weights hashes: equal bits, or the removal is not exact.

Approximate (FedEraser, Liu et al., IWQoS 2021, section IV-B): the server replays the
retained rounds t_0, t_Delta, ... of the affected groups from the group's initial model;
at each, the remaining clients train a few calibration epochs from the unlearned model,
and each client's calibrated update keeps the *direction* of that calibration and the
*magnitude* of its stored update (per output unit by default, per array as in the paper:
:mod:`.calibration`). Cheaper than a retrain (T / Delta rounds of
shorter local training), and not exact: its result is flagged provisional.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from unlearn_ops.errors import InvalidRequestError
from unlearn_ops.federated.averaging import federated_average, weights_delta
from unlearn_ops.federated.calibration import calibrate, stretch
from unlearn_ops.federated.client import Weights, local_update, weights_hash
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import ClientData
from unlearn_ops.federated.groups import GroupRun, hash_client_id, train_group
from unlearn_ops.federated.history import StoredRound, UpdateHistory
from unlearn_ops.federated.simulation import FederationRun, train_groups
from unlearn_ops.sisa.checkpoints import CheckpointStore

__all__ = [
    "ApproximateRemoval",
    "ExactRemoval",
    "RemovalCertificate",
    "certify_exact_removal",
    "erase_clients_approximately",
    "remove_clients_exactly",
]


def _check_clients(run: FederationRun, client_ids: Sequence[str]) -> list[str]:
    if not client_ids:
        raise InvalidRequestError("no client to remove", "name at least one client")
    unknown = [c for c in client_ids if c not in run.assignment]
    if unknown:
        # Counted, not named: an id that is not a member may still be someone's.
        raise InvalidRequestError(
            f"{len(unknown)} of {len(client_ids)} client(s) to remove are not in the federation",
            "name clients by the ids they train under; nothing was changed",
        )
    return list(dict.fromkeys(client_ids))


@dataclass
class ExactRemoval:
    """A federation after an exact removal.

    Attributes:
        run: the new federation (affected groups retrained, the others kept).
        removed_hashes: keyed hashes of the removed clients.
        groups_retrained: the affected groups.
        resumed_from_round: group -> first round retrained.
        remaining: the clients of the affected groups that remain (for the certificate).
        client_rounds: local trainings the removal ran (clients x rounds).
        seconds: wall time.
    """

    run: FederationRun
    removed_hashes: list[str]
    groups_retrained: list[int]
    resumed_from_round: dict[int, int]
    remaining: list[ClientData]
    client_rounds: int
    seconds: float


def remove_clients_exactly(
    run: FederationRun,
    clients: Sequence[ClientData],
    client_ids: Sequence[str],
    *,
    store: CheckpointStore | None,
) -> ExactRemoval:
    """Retrain the removed clients' groups without them, from their last unaffected checkpoint.

    Args:
        run: the trained federation.
        clients: every client's table (those removed may be among them; they are left out).
        client_ids: the clients to remove.
        store: the round checkpoints the federation saved (None: retrain from scratch).

    Raises:
        InvalidRequestError: no client named, or one that is not in the federation.
    """
    started = time.perf_counter()
    removed = _check_clients(run, client_ids)
    gone = set(removed)
    affected = sorted({run.assignment[c] for c in removed})
    assignment = {c: g for c, g in run.assignment.items() if c not in gone}
    kept = [c for c in clients if c.client_id in assignment]
    retrained = train_groups(
        kept,
        run.params,
        assignment,
        affected,
        num_classes=run.num_classes,
        key=run.key,
        join_rounds=run.join_rounds,
        store=store,
    )
    groups: dict[int, GroupRun] = {g: r for g, r in run.groups.items() if g not in affected}
    groups.update(retrained)
    new_run = FederationRun(
        params=run.params,
        num_classes=run.num_classes,
        assignment=assignment,
        join_rounds={c: r for c, r in run.join_rounds.items() if c not in gone},
        groups=groups,
        key=run.key,
    )
    return ExactRemoval(
        run=new_run,
        removed_hashes=[hash_client_id(c, run.key) for c in removed],
        groups_retrained=affected,
        resumed_from_round={g: r.resumed_from_round for g, r in retrained.items()},
        remaining=[c for c in kept if assignment[c.client_id] in affected],
        client_rounds=sum(r.client_rounds for r in retrained.values()),
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class RemovalCertificate:
    """Bit-for-bit evidence that a retrained group equals a fresh federation without the clients.

    Attributes:
        group_id: the group.
        retrained_hash: weights hash of the group after the removal.
        fresh_hash: weights hash of the group trained from scratch without the clients.
        client_hashes: keyed hashes of the clients the fresh federation trained.
    """

    group_id: int
    retrained_hash: str
    fresh_hash: str
    client_hashes: tuple[str, ...]

    @property
    def holds(self) -> bool:
        """Whether the two models are the same bits."""
        return self.retrained_hash == self.fresh_hash

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (client hashes only)."""
        return {
            "group": self.group_id,
            "retrained_weights_hash": self.retrained_hash,
            "fresh_weights_hash": self.fresh_hash,
            "clients": list(self.client_hashes),
            "holds": self.holds,
        }


def certify_exact_removal(removal: ExactRemoval) -> list[RemovalCertificate]:
    """Train each retrained group afresh (no checkpoints) and compare weights hashes."""
    run = removal.run
    certificates: list[RemovalCertificate] = []
    for group_id in removal.groups_retrained:
        members = [c for c in removal.remaining if run.assignment[c.client_id] == group_id]
        retrained = run.groups.get(group_id)
        if retrained is None:  # the group lost every client: nothing is served from it
            continue
        fresh = train_group(
            group_id,
            members,
            run.params,
            num_classes=run.num_classes,
            key=run.key,
            join_rounds=run.join_rounds,
        )
        certificates.append(
            RemovalCertificate(
                group_id,
                weights_hash(retrained.weights),
                weights_hash(fresh.weights),
                tuple(fresh.client_hashes),
            )
        )
    return certificates


@dataclass
class ApproximateRemoval:
    """A federation after a FedEraser removal: provisional, not certified.

    Attributes:
        run: the federation with the affected groups' models calibrated.
        removed_hashes: keyed hashes of the removed clients.
        groups_calibrated: the affected groups.
        client_rounds: calibration trainings run (clients x retained rounds).
        client_epochs: local epochs those ran (the cost in the units of a retrain's epochs).
        seconds: wall time.
        provisional: always True: an approximate removal carries no exactness certificate.
    """

    run: FederationRun
    removed_hashes: list[str]
    groups_calibrated: list[int]
    client_rounds: int
    client_epochs: int
    seconds: float
    provisional: bool = field(default=True)


def _stretch(step: Weights, stored: StoredRound, end: Weights) -> Weights:
    """The step stretched to the group model's move over the retained round's interval.

    Both lengths come from what the server kept (the models at the retained rounds and
    the stored updates), so the stretch needs no client; it is 1 when every round is kept.
    """
    original = federated_average(list(stored.updates.values()))
    return stretch(step, stored.start_weights, end, original)


def _finish_round(
    weights: Weights,
    clients: Sequence[ClientData],
    params: FederationParams,
    num_classes: int,
    extra: int,
) -> Weights:
    """One ordinary FedAvg round after the replay (rounds numbered on from the federation's)."""
    results = [
        local_update(
            weights, client, params, num_classes=num_classes, round_number=params.rounds + extra
        )
        for client in clients
    ]
    return federated_average([(r.weights, r.num_examples) for r in results])


def erase_clients_approximately(
    run: FederationRun,
    clients: Sequence[ClientData],
    client_ids: Sequence[str],
    history: UpdateHistory,
) -> ApproximateRemoval:
    """FedEraser: rebuild the affected groups from their retained rounds with calibrated updates.

    Args:
        run: the trained federation.
        clients: every client's table (the removed ones are left out).
        client_ids: the clients to remove.
        history: the rounds the server retained while training `run`.

    Raises:
        InvalidRequestError: no client named, or one not in the federation.
        ValueError: no retained round for an affected group (no history was recorded).
    """
    started = time.perf_counter()
    removed = _check_clients(run, client_ids)
    gone = {hash_client_id(c, run.key) for c in removed}
    affected = sorted({run.assignment[c] for c in removed})
    params = run.params
    epochs = params.erasure.calibration_epochs
    by_hash = {hash_client_id(c.client_id, run.key): c for c in clients}
    groups = dict(run.groups)
    client_rounds = 0
    finish_client_rounds = 0
    for group_id in affected:
        retained = history.rounds.get(group_id)
        if not retained:
            raise ValueError(f"no retained round for group {group_id}: record an UpdateHistory")
        # FedEraser starts from the model of the first retained round: round 0's start
        # is the group's initial model, which no client has touched.
        weights = [w.copy() for w in retained[0].start_weights]
        group_rounds = 0
        ends = [s.start_weights for s in retained[1:]] + [run.groups[group_id].weights]
        for stored, end in zip(retained, ends, strict=True):
            calibrated: list[tuple[Weights, int]] = []
            for client_hash in sorted(stored.updates):
                if client_hash in gone or client_hash not in by_hash:
                    continue
                old_update, count = stored.updates[client_hash]
                result = local_update(
                    weights,
                    by_hash[client_hash],
                    params,
                    num_classes=run.num_classes,
                    round_number=stored.round_number,
                    epochs=epochs,
                )
                fresh = weights_delta(result.weights, weights)
                calibrated.append((calibrate(old_update, fresh, params.erasure.granularity), count))
                group_rounds += 1
            if calibrated:
                step = federated_average(calibrated)
                if params.erasure.scale_to_interval:
                    step = _stretch(step, stored, end)
                weights = [(w + s).astype(w.dtype) for w, s in zip(weights, step, strict=True)]
        remaining = [
            by_hash[h]
            for h in sorted(run.groups[group_id].client_hashes)
            if h not in gone and h in by_hash
        ]
        for extra in range(params.erasure.finish_rounds if remaining else 0):
            weights = _finish_round(weights, remaining, params, run.num_classes, extra)
            group_rounds += len(remaining)
            finish_client_rounds += len(remaining)
        previous = run.groups[group_id]
        groups[group_id] = GroupRun(
            group_id=group_id,
            weights=weights,
            round_keys=[],
            client_hashes=[h for h in previous.client_hashes if h not in gone],
            resumed_from_round=0,
            client_rounds=group_rounds,
            seconds=time.perf_counter() - started,
        )
        client_rounds += group_rounds
    new_run = FederationRun(
        params=params,
        num_classes=run.num_classes,
        assignment={c: g for c, g in run.assignment.items() if c not in set(removed)},
        join_rounds={c: r for c, r in run.join_rounds.items() if c not in set(removed)},
        groups=groups,
        key=run.key,
    )
    return ApproximateRemoval(
        run=new_run,
        removed_hashes=sorted(gone),
        groups_calibrated=affected,
        client_rounds=client_rounds,
        client_epochs=(client_rounds - finish_client_rounds) * epochs
        + finish_client_rounds * params.local_epochs,
        seconds=time.perf_counter() - started,
    )

"""The confidences the membership audit compares: phi per record, per model, and their samples.

``phi = log p_y - log(1 - p_y)``, the logit-scaled confidence of the true label (Carlini et
al., S&P 2022, sec. IV), computed from the logits as ``z_y - logsumexp_{k != y} z_k`` without
forming ``p`` (no cancellation when ``p_y`` is close to 1). A :class:`ConfidenceSample` holds
phi of some records under the model audited (the target) and under reference models that
never trained on them; :class:`AuditSamples` groups what one version gives the audit. Under
SISA (:func:`shard_samples`) a record of shard ``s`` has the model of shard ``s`` as target
and the other ``S - 1`` shard models as references. Pure numpy; torch only inside
:func:`module_confidences`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import torch

__all__ = [
    "AuditSamples",
    "ConfidenceSample",
    "ExtraReferences",
    "logit_confidence",
    "module_confidences",
    "shard_sample",
    "shard_samples",
    "split_heldout",
]

FloatArray = NDArray[np.float64]


def logit_confidence(logits: ArrayLike, labels: ArrayLike) -> FloatArray:
    """``phi = log p_y - log(1 - p_y)`` from logits, stably: ``z_y - logsumexp_{k != y} z_k``.

    Args:
        logits: shape (..., records, classes).
        labels: the true class of each record, shape (records,).

    Returns:
        phi, shape (..., records).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    true = np.take_along_axis(z, y.reshape((1,) * (z.ndim - 2) + (-1, 1)), axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, y.reshape((1,) * (z.ndim - 2) + (-1, 1)), -np.inf, axis=-1)
    peak = others.max(axis=-1, keepdims=True)
    rest = peak[..., 0] + np.log(np.exp(others - peak).sum(axis=-1))
    return np.asarray(true - rest, dtype=np.float64)


def module_confidences(
    modules: Sequence[torch.nn.Module], features: ArrayLike, labels: ArrayLike
) -> FloatArray:
    """phi of every record under every model: shape (models, records).

    Args:
        modules: torch models returning logits (put in eval mode here).
        features: float feature matrix (records x features).
        labels: true class per record.
    """
    import torch

    inputs = torch.from_numpy(np.array(features, dtype=np.float32))  # a writable copy
    with torch.no_grad():
        logits = []
        for module in modules:
            module.eval()
            logits.append(module(inputs).double().numpy())
    return logit_confidence(np.stack(logits), labels)


@dataclass(frozen=True)
class ConfidenceSample:
    """phi of some records under their target model and under OUT reference models.

    Attributes:
        target: phi under the model audited, shape (records,).
        references: phi under models that never trained on the records, (models, records).
        groups: which target model scored each record (its shard under SISA); the
            offset of each target model is calibrated per group. Empty: one target.
        inside: which reference models trained on each record ("IN" models), shape
            (models, records). Empty: none did (every reference is OUT: the offline test).
    """

    target: FloatArray
    references: FloatArray
    groups: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    inside: NDArray[np.bool_] = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))

    def __post_init__(self) -> None:
        refs = np.asarray(self.references, dtype=np.float64)
        target = np.asarray(self.target, dtype=np.float64).reshape(-1)
        if refs.ndim != 2 or refs.shape[1] != target.size or refs.shape[0] < 2:
            raise ValueError(
                f"references must be (models >= 2, {target.size}) for {target.size} records, "
                f"got shape {refs.shape}"
            )
        groups = np.asarray(self.groups, dtype=np.int64).reshape(-1)
        if groups.size == 0:
            groups = np.zeros(target.size, dtype=np.int64)
        if groups.size != target.size:
            raise ValueError(f"groups must name one target per record, got {groups.size}")
        inside = np.asarray(self.inside, dtype=bool)
        if inside.size == 0:
            inside = np.zeros(refs.shape, dtype=bool)
        if inside.shape != refs.shape:
            raise ValueError(
                f"inside must have the references' shape {refs.shape}, got {inside.shape}"
            )
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "references", refs)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "inside", inside)

    @property
    def online(self) -> bool:
        """Whether every record has at least one IN reference (the online test applies)."""
        return bool(self.inside.size) and bool(self.inside.any(axis=0).all())

    def residuals(self) -> FloatArray:
        """``phi_t - mu``: the target's phi minus the OUT references' mean, per record."""
        if not self.inside.any():
            return np.asarray(self.target - self.references.mean(axis=0))
        out = np.where(self.inside, np.nan, self.references)
        return np.asarray(self.target - np.nanmean(out, axis=0))

    def select(self, rows: NDArray[np.int64]) -> ConfidenceSample:
        """The sample restricted to `rows`."""
        return ConfidenceSample(
            self.target[rows], self.references[:, rows], self.groups[rows], self.inside[:, rows]
        )

    def with_references(self, references: ArrayLike, inside: ArrayLike) -> ConfidenceSample:
        """The sample with more reference models appended (their phi and IN mask)."""
        return ConfidenceSample(
            self.target,
            np.vstack([self.references, np.asarray(references, dtype=np.float64)]),
            self.groups,
            np.vstack([self.inside, np.asarray(inside, dtype=bool)]),
        )


@dataclass(frozen=True)
class AuditSamples:
    """What one set of models (a version) gives the audit.

    Attributes:
        candidates: the records under test (the forgotten records).
        calibration: held-out records that calibrate each target model's offset.
        heldout: other held-out records: the negative control.
    """

    candidates: ConfidenceSample
    calibration: ConfidenceSample
    heldout: ConfidenceSample


def split_heldout(sample: ConfidenceSample) -> tuple[ConfidenceSample, ConfidenceSample]:
    """Alternate held-out records into (calibration, negative control): disjoint halves."""
    rows = np.arange(sample.target.size)
    return sample.select(rows[0::2]), sample.select(rows[1::2])


def shard_samples(
    forgotten: ArrayLike,
    forgotten_shards: ArrayLike,
    heldout: ArrayLike,
    extra: ExtraReferences | None = None,
) -> AuditSamples:
    """The audit samples of a SISA ensemble, from phi under each of its S shard models.

    A forgotten record's target is the model of its own shard, its references the other
    ``S - 1``. Held-out records are dealt to the shards in pairs, so that both halves of
    :func:`split_heldout` give every shard model calibration and control records.

    Args:
        forgotten: phi of the forgotten records, (shards, records).
        forgotten_shards: the shard each forgotten record was in.
        heldout: phi of the held-out records, (shards, records).
        extra: reference models trained for the audit, appended to every record's
            references (:mod:`unlearn_ops.privacy.references`).
    """
    phi_heldout = np.asarray(heldout, dtype=np.float64)
    dealt = (np.arange(phi_heldout.shape[1]) // 2) % phi_heldout.shape[0]
    candidates = shard_sample(forgotten, forgotten_shards)
    held = shard_sample(phi_heldout, dealt)
    if extra is not None:
        candidates = candidates.with_references(extra.forgotten, extra.forgotten_inside)
        held = held.with_references(extra.heldout, extra.heldout_inside)
    calibration, control = split_heldout(held)
    return AuditSamples(candidates, calibration, control)


@dataclass(frozen=True)
class ExtraReferences:
    """phi under reference models trained for the audit, and which of them trained on what.

    Attributes:
        forgotten: phi of the forgotten records, (models, records).
        forgotten_inside: whether each model trained on each forgotten record.
        heldout: phi of the held-out records, (models, records).
        heldout_inside: whether each model trained on each held-out record.
    """

    forgotten: FloatArray
    forgotten_inside: NDArray[np.bool_]
    heldout: FloatArray
    heldout_inside: NDArray[np.bool_]


def shard_sample(confidences: ArrayLike, shard_of: ArrayLike) -> ConfidenceSample:
    """Target and references of records under an ensemble's shard models.

    Args:
        confidences: phi of every record under every shard model, (shards, records).
        shard_of: the shard whose model is each record's target.

    Returns:
        The target's phi, the other ``S - 1`` shard models' phi as references, and the
        shard as the record's group.
    """
    phi = np.asarray(confidences, dtype=np.float64)
    shards = np.asarray(shard_of, dtype=np.int64)
    columns = np.arange(phi.shape[1])
    keep = np.ones(phi.shape, dtype=bool)
    keep[shards, columns] = False
    references = phi.T[keep.T].reshape(phi.shape[1], phi.shape[0] - 1).T
    return ConfidenceSample(phi[shards, columns], references, shards)

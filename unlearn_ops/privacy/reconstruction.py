"""Reconstruction of a deleted record from the parameter difference of a linear release.

Bertran et al., "Reconstruction Attacks on Machine Unlearning" (NeurIPS 2024, arXiv
2405.20272), section 3: for ridge regression on features φ (raw features, or a frozen
embedding under a linear head) with a bias, θ = H⁻¹ Aᵀ Y, H = AᵀA + λI, A = [φ(X), 1].
Deleting the record a0 = [φ(x0), 1] with one-hot target y0 gives H' = H - a0 a0ᵀ and

    H' (θ_after - θ_before) = a0 (θ_beforeᵀ a0 - y0)ᵀ,

a rank-one matrix: its left singular vector is a0 (the deleted record, up to scale) and
its right one the residual θ_beforeᵀa0 - y0, which gives the label. The attacker
estimates H' from public samples of the same distribution, scaled to the training size
(n/m · A_pubᵀ A_pub + λI), and takes the top singular pair. The bias entry of a0 is 1,
which fixes the sign.

Scores (only scores are kept, never reconstructions): the cosine between the
reconstruction and the deleted record, minus the best cosine of any public record to it
(what an attacker gets without the pair: the nearest-neighbour baseline), all around the
public mean, the rank of
the deleted record among public ∪ deleted by cosine to the reconstruction, and whether
the label is recovered. For a batch of k deletions the difference has rank k: the top
singular vector is scored against its best-matching deleted record.

Deep feature layers are "not assessed": once a whole network is retrained its features
are not frozen, and this linear algebra says nothing about them. Pure numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from unlearn_ops.errors import ConfigError

__all__ = [
    "NOT_ASSESSED",
    "ReconstructionResult",
    "assess_reconstruction",
    "fit_ridge",
    "public_hessian",
    "reconstruct",
]

NOT_ASSESSED = "not assessed"
"""What the audit says of layers this attack does not cover (deep feature layers)."""


@dataclass(frozen=True)
class ReconstructionResult:
    """Scores of one reconstruction; the reconstruction itself is not kept.

    Attributes:
        cosine: cosine of the reconstruction to the (best-matching) deleted record.
        baseline_cosine: best cosine of any public record to that deleted record.
        excess_cosine: `cosine - baseline_cosine`: what the pair adds (<= 0: nothing).
        rank: 1-based rank of the deleted record among public ∪ deleted by cosine to
            the reconstruction (1: the attacker's best guess is the deleted record).
        label_recovered: the recovered label is the deleted record's.
        deleted: how many records the difference mixes.
    """

    cosine: float
    baseline_cosine: float
    excess_cosine: float
    rank: int
    label_recovered: bool
    deleted: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)


def _augment(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    return np.hstack([features, np.ones((len(features), 1))])


def fit_ridge(
    features: np.ndarray, labels: np.ndarray, num_classes: int, ridge: float
) -> np.ndarray:
    """Ridge regression on one-hot targets, with a bias: θ of shape (features + 1, classes).

    Raises:
        ConfigError: `ridge` is not positive.
    """
    if ridge <= 0:
        raise ConfigError("the ridge probe", [f"ridge must be > 0, got {ridge}"])
    design = _augment(features)
    targets = np.eye(num_classes)[np.asarray(labels, dtype=np.int64)]
    hessian = design.T @ design + ridge * np.eye(design.shape[1])
    return np.linalg.solve(hessian, design.T @ targets)


def public_hessian(public_features: np.ndarray, num_train: int, ridge: float) -> np.ndarray:
    """The attacker's estimate of H': public samples' Gram matrix scaled to `num_train`."""
    design = _augment(public_features)
    scale = num_train / max(len(design), 1)
    hessian: np.ndarray = scale * (design.T @ design) + ridge * np.eye(design.shape[1])
    return hessian


def reconstruct(
    delta_theta: np.ndarray, hessian: np.ndarray, theta_before: np.ndarray
) -> tuple[np.ndarray, int]:
    """The deleted record's features and its label, from θ_after - θ_before.

    The label: the residual direction is parallel to θ_beforeᵀa0 - y0, and the attacker
    knows θ_before and (now) a0, so the label is the class k whose θ_beforeᵀa0 - e_k is
    most nearly parallel to it (ridge outputs can be negative, so the residual's smallest
    entry alone is not reliable).
    """
    product = hessian @ np.asarray(delta_theta, dtype=np.float64)
    left, _, right = np.linalg.svd(product, full_matrices=False)
    record, residual = left[:, 0], right[0]
    if record[-1] < 0:  # the bias entry of a0 is +1
        record, residual = -record, -residual
    # The same entry gives the scale: a0 / a0[-1] is the record itself, not a multiple.
    scale = record[-1] if record[-1] > 1e-12 else 1.0
    record = record / scale
    outputs = np.asarray(theta_before, dtype=np.float64).T @ record
    candidates = outputs[None, :] - np.eye(len(outputs))
    fits = _cosines(candidates, residual)
    return record[:-1], int(np.argmax(fits))


def _cosines(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector)
    return np.asarray(matrix @ vector / np.where(norms == 0, 1.0, norms))


def assess_reconstruction(
    theta_before: np.ndarray,
    theta_after: np.ndarray,
    *,
    public_features: np.ndarray,
    num_train: int,
    ridge: float,
    deleted_features: np.ndarray,
    deleted_labels: np.ndarray,
) -> ReconstructionResult:
    """Run the attack on one pair of linear releases and score it against the truth.

    Args:
        theta_before: the released parameters before the deletion, (features + 1, classes).
        theta_after: the released parameters after it.
        public_features: records the attacker holds (never the deleted ones).
        num_train: training records behind `theta_before` (public knowledge: the shard size).
        ridge: the release's ridge penalty (public: part of the recipe).
        deleted_features: the deleted records, one row each (the truth, for scoring).
        deleted_labels: their labels.

    Raises:
        ConfigError: no deleted record, or shapes that do not match.
    """
    deleted_features = np.atleast_2d(np.asarray(deleted_features, dtype=np.float64))
    deleted_labels = np.atleast_1d(np.asarray(deleted_labels, dtype=np.int64))
    theta_before = np.asarray(theta_before, dtype=np.float64)
    if not len(deleted_features) or len(deleted_features) != len(deleted_labels):
        raise ConfigError("the reconstruction attack", ["needs one label per deleted record"])
    if theta_before.shape != np.shape(theta_after) or theta_before.shape[0] != (
        deleted_features.shape[1] + 1
    ):
        raise ConfigError(
            "the reconstruction attack",
            [f"parameters {theta_before.shape} do not fit {deleted_features.shape[1]} features"],
        )
    hessian = public_hessian(public_features, num_train, ridge)
    record, label = reconstruct(np.asarray(theta_after) - theta_before, hessian, theta_before)
    public = np.asarray(public_features, dtype=np.float64)
    # Cosines are taken around the public mean: raw non-negative features (pixels) are
    # all alike in cosine, which would hide the gain over the nearest public neighbour.
    centre = public.mean(axis=0) if len(public) else np.zeros(deleted_features.shape[1])
    public, record, deleted_features = public - centre, record - centre, deleted_features - centre
    to_deleted = _cosines(deleted_features, record)
    best = int(np.argmax(to_deleted))
    target = deleted_features[best]
    baseline = float(_cosines(public, target).max()) if len(public) else 0.0
    to_public = _cosines(public, record)
    rank = 1 + int((to_public > to_deleted[best]).sum())
    return ReconstructionResult(
        cosine=float(to_deleted[best]),
        baseline_cosine=baseline,
        excess_cosine=float(to_deleted[best]) - baseline,
        rank=rank,
        label_recovered=label == int(deleted_labels[best]),
        deleted=len(deleted_features),
    )

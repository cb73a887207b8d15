"""Membership scores of a version's models: the offline and the online LiRA statistics.

Offline (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022,
sec. IV-D): OUT references only, a Gaussian per record with one pooled variance, the
one-sided z of the target's phi. Online (sec. IV-C): IN and OUT references per record, the
log-likelihood ratio of the target's phi under the two Gaussians, its null read off
held-out calibration records. Both subtract each target model's offset, calibrated on
held-out records. The audit that turns scores into a verdict is
:mod:`unlearn_ops.privacy.membership`. Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from unlearn_ops.privacy.confidence import AuditSamples, ConfidenceSample
from unlearn_ops.privacy.statistics import normal_sf

__all__ = ["PRIOR_DEGREES", "MembershipScores", "score_membership", "score_online"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class MembershipScores:
    """One-sided scores of candidate and held-out records under one set of models.

    Attributes:
        candidates: scores of the records under test (higher: more like a member): z
            (offline) or the log-likelihood ratio IN against OUT (online).
        heldout: scores of held-out records (never trained on: the null).
        sigma: the pooled standard deviation of the OUT references' phi.
        method: `offline` (OUT references only) or `online` (IN and OUT references).
        candidate_p: p-values of the candidates (None: ``P(Z > z)`` under the Gaussian).
        heldout_p: p-values of the held-out records (None: as above).
    """

    candidates: FloatArray
    heldout: FloatArray
    sigma: float
    method: Literal["offline", "online"] = "offline"
    candidate_p: FloatArray | None = None
    heldout_p: FloatArray | None = None

    def p_values(self, which: Literal["candidates", "heldout"]) -> FloatArray:
        """The p-value of each record of `which` (small: unlike never-seen records)."""
        given = self.candidate_p if which == "candidates" else self.heldout_p
        if given is not None:
            return given
        return normal_sf(self.candidates if which == "candidates" else self.heldout)


# The weight, in degrees of freedom, of the pooled variance in a record's own variance:
# few references make s^2(x) noisy, so it is shrunk towards the pool (online test).
PRIOR_DEGREES = 4.0


def _wilson_hilferty(k: Any) -> Any:
    """Median of chi2_k / k (Wilson-Hilferty): a sample variance's median is this x sigma^2."""
    return (1.0 - 2.0 / (9.0 * k)) ** 3


def score_membership(samples: AuditSamples, min_calibration: int = 100) -> MembershipScores:
    """Membership scores of candidates and held-out records under one set of models.

    Online (every record has IN references, :attr:`ConfidenceSample.online`, and at least
    `min_calibration` calibration records to read the null off): see :func:`score_online`.
    Otherwise offline, against the OUT references only: one variance is pooled over every
    record the references score (few references: Carlini et al. pool it), by the median
    of the per-record variances. Each target model's offset, the median of
    ``phi_t - mu`` over the calibration records it scores, is subtracted: a target
    trained longer or on more data than its references is more confident on every record,
    member or not (a monolithic model against retrained references), and that must not
    count as membership.
    """
    parts = [samples.candidates, samples.calibration, samples.heldout]
    if all(p.online for p in parts) and samples.calibration.target.size >= min_calibration:
        return score_online(samples)
    moments = [_moments(p.references, ~p.inside) for p in parts]
    if min(int(np.min(m[2])) for m in moments) < 2:
        raise ValueError("every record needs at least two OUT references")
    # The median, not the mean: a few records on which the references disagree wildly
    # (mislabelled, atypical) would otherwise set the scale for all. Under the Gaussian,
    # s^2 ~ sigma^2 chi2_k / k (k = m - 1), whose median is about (1 - 2/(9k))^3 sigma^2
    # (Wilson-Hilferty): divide it out.
    ratios = np.concatenate([m[1] / _wilson_hilferty(m[2] - 1) for m in moments])
    sigma = math.sqrt(max(float(np.median(ratios)), 1e-12))
    offsets = _offsets(samples.calibration)

    def z(sample: ConfidenceSample, count: Any) -> FloatArray:
        # `sqrt(1 + 1/m)`: the mean is estimated from m draws.
        scale = sigma * np.sqrt(1.0 + 1.0 / count)
        return np.asarray((sample.residuals() - _offset_of(sample, offsets)) / scale)

    return MembershipScores(
        z(samples.candidates, moments[0][2]), z(samples.heldout, moments[2][2]), sigma
    )


def _offsets(calibration: ConfidenceSample) -> dict[int, float]:
    residuals = calibration.residuals()
    return {
        int(g): float(np.median(residuals[calibration.groups == g]))
        for g in np.unique(calibration.groups)
    }


def _offset_of(sample: ConfidenceSample, offsets: dict[int, float]) -> FloatArray:
    return np.array([offsets.get(int(g), 0.0) for g in sample.groups], dtype=np.float64)


def _moments(values: FloatArray, keep: NDArray[np.bool_]) -> tuple[FloatArray, FloatArray, Any]:
    """Per-record mean, sample variance (nan under 2 values) and count of the kept values."""
    count = keep.sum(axis=0)
    masked = np.where(keep, values, 0.0)
    mean = masked.sum(axis=0) / np.maximum(count, 1)
    squares = np.where(keep, (values - mean) ** 2, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.where(count > 1, squares / (count - 1), np.nan)
    return mean, variance, count


def score_online(samples: AuditSamples) -> MembershipScores:
    """Online LiRA (Carlini et al., S&P 2022, sec. IV-C): IN against OUT, per record.

    For each record, the IN references (trained on it) and the OUT references (not) give
    two Gaussians of phi: means ``mu_in(x)``, ``mu_out(x)``, and variances ``s^2(x)``
    shrunk towards the median pooled over records (:data:`PRIOR_DEGREES` degrees of
    freedom of the pool). The score is the log-likelihood ratio of the target's phi, less
    the target model's offset (calibrated on the calibration records, as offline), under
    IN against OUT: a global threshold on it ranks records by how much membership would
    move them, which is where low-FPR power comes from. Its null distribution is read off
    the calibration records, never trained on by the target: the p-value of a score ``s``
    is ``(1 + #{calibration >= s}) / (1 + n_calibration)`` (valid for records exchangeable
    with them: a forgotten record under a model that never saw it).
    """
    parts = [samples.candidates, samples.calibration, samples.heldout]
    moments = []
    for part in parts:
        outside = ~part.inside
        mean_out, var_out, n_out = _moments(part.references, outside)
        mean_in, var_in, n_in = _moments(part.references, part.inside)
        moments.append((mean_out, var_out, n_out, mean_in, var_in, n_in))
    pooled = {}
    for index, side in ((1, "out"), (4, "in")):
        ratios = np.concatenate(
            [m[index] / _wilson_hilferty(np.maximum(m[index + 1] - 1, 1)) for m in moments]
        )
        finite = ratios[np.isfinite(ratios)]
        pooled[side] = float(np.median(finite)) if finite.size else 1.0
    offsets = _offsets(samples.calibration)

    def shrunk(variance: FloatArray, count: Any, pool: float) -> FloatArray:
        own = np.where(np.isfinite(variance), variance, 0.0) * np.maximum(count - 1, 0)
        return np.asarray((own + PRIOR_DEGREES * pool) / (np.maximum(count - 1, 0) + PRIOR_DEGREES))

    def llr(part: ConfidenceSample, stats: tuple[Any, ...]) -> FloatArray:
        mean_out, var_out, n_out, mean_in, var_in, n_in = stats
        x = part.target - _offset_of(part, offsets)
        # The means are estimated from n draws: their noise adds to the spread (as offline).
        v_out = shrunk(var_out, n_out, pooled["out"]) * (1.0 + 1.0 / np.maximum(n_out, 1))
        v_in = shrunk(var_in, n_in, pooled["in"]) * (1.0 + 1.0 / np.maximum(n_in, 1))
        return np.asarray(
            0.5 * (np.log(v_out) - np.log(v_in))
            - 0.5 * (x - mean_in) ** 2 / v_in
            + 0.5 * (x - mean_out) ** 2 / v_out
        )

    scores = [llr(part, stats) for part, stats in zip(parts, moments, strict=True)]
    calibration = np.sort(scores[1])

    def p_values(values: FloatArray) -> FloatArray:
        above = calibration.size - np.searchsorted(calibration, values, side="left")
        return np.asarray((1.0 + above) / (1.0 + calibration.size))

    return MembershipScores(
        scores[0],
        scores[2],
        math.sqrt(pooled["out"]),
        "online",
        p_values(scores[0]),
        p_values(scores[2]),
    )

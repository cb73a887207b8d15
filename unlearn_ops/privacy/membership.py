"""The per-example membership audit of a forget version: offline LiRA against OUT references.

The statistic (Carlini et al., "Membership Inference Attacks From First Principles",
S&P 2022, sec. IV) is the logit-scaled confidence of the true label ``phi``
(:mod:`unlearn_ops.privacy.confidence`).

For each record, ``m`` reference models that never trained on it ("OUT" models) give
``phi_1..phi_m``; the offline test fits a Gaussian with the per-record mean ``mu(x)`` and
one variance ``sigma^2`` pooled over every record scored with the same models (few
references: Carlini et al. pool it; here by the median, see :func:`score_membership`).
The target's ``phi_t(x)``, less the target model's offset ``delta_t`` calibrated on
held-out records, gets the one-sided score
``z = (phi_t - mu - delta_t) / (sigma * sqrt(1 + 1/m))`` (the mean is estimated from ``m``
draws) and the p-value ``P(Z > z)``: a member is more confident than models that never
saw it.

Under SISA the references are free: a record of shard ``s`` was never in the other
``S - 1`` shards, whose models use the same recipe on as much data. The target for a
forgotten record is the retrained model of its own shard, not the served ensemble: that is
the only model that ever held the record, and averaging it with ``S - 1`` models that never
did would dilute a leak ``S``-fold. The ensemble's other shards are its references.

Two controls (see docs/PRIVACY_AUDIT.md): the positive control applies the same test to the
parent version's model of the shard, which did train on the records (if it cannot find
them, the test has no power and the verdict is ``inconclusive``); the negative control
scores held-out records, never trained on, and measures the false-positive rate.

With reference models trained for the audit, IN and OUT of each record
(:mod:`unlearn_ops.privacy.references`), and enough held-out records to read its null off,
the online test replaces the offline one (:mod:`unlearn_ops.privacy.scoring`); the
controls and the verdict are the same. Pure numpy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from unlearn_ops.privacy.confidence import AuditSamples
from unlearn_ops.privacy.scoring import score_membership
from unlearn_ops.privacy.statistics import (
    Estimate,
    bootstrap_interval,
    max_allowed_flags,
    roc_auc,
    tpr_at_fpr,
)

__all__ = [
    "MembershipAudit",
    "audit_membership",
    "audit_tags",
    "privacy_summary",
    "score_histogram",
]

FloatArray = NDArray[np.float64]
Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class MembershipAudit:
    """The audit's numbers, controls and verdict (all intervals are seeded bootstraps).

    Attributes:
        verdict: `pass`, `fail` or `inconclusive`.
        reason: the verdict in one sentence.
        forgotten: number of forgotten records tested.
        heldout: number of held-out records (negative control).
        references: reference models per record.
        alpha: per-record test level.
        flagged: forgotten records with p < alpha.
        allowed: the Binomial(n, alpha) bar: pass needs flagged <= allowed.
        auc: AUC of forgotten against held-out records.
        tpr_1: TPR at 1% FPR.
        tpr_01: TPR at 0.1% FPR.
        heldout_fpr: share of held-out records flagged (negative control).
        control_auc: AUC of the positive control (parent model on the same records).
        control_tpr_1: TPR at 1% FPR of the positive control.
        scores: scores kept for the plot: forgotten, positive control, negative control.
        method: `offline` (OUT references: z-scores) or `online` (IN and OUT references:
            log-likelihood ratios, p-values from the calibration records).
    """

    verdict: Verdict
    reason: str
    forgotten: int
    heldout: int
    references: int
    alpha: float
    flagged: int
    allowed: int
    auc: Estimate
    tpr_1: Estimate
    tpr_01: Estimate
    heldout_fpr: Estimate
    control_auc: Estimate | None
    control_tpr_1: Estimate | None
    scores: dict[str, FloatArray] = field(default_factory=dict, compare=False, repr=False)
    method: str = "offline"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the scores as a histogram over fixed bins)."""

        def view(estimate: Estimate | None) -> dict[str, float] | None:
            return None if estimate is None else estimate.as_dict()

        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "method": self.method,
            "forgotten": self.forgotten,
            "heldout": self.heldout,
            "references": self.references,
            "alpha": self.alpha,
            "flagged": self.flagged,
            "allowed": self.allowed,
            "auc": view(self.auc),
            "tpr_at_1pct_fpr": view(self.tpr_1),
            "tpr_at_0.1pct_fpr": view(self.tpr_01),
            "heldout_fpr": view(self.heldout_fpr),
            "positive_control_auc": view(self.control_auc),
            "positive_control_tpr_at_1pct_fpr": view(self.control_tpr_1),
            "histogram": score_histogram(self.scores),
        }

    def tags(self) -> dict[str, str]:
        """The `privacy.*` tags of the audited version (the registry adds `unlearn.`)."""
        return audit_tags(self.to_dict())


HISTOGRAM_EDGES = tuple(float(edge) for edge in np.arange(-4.0, 12.5, 0.5))


def score_histogram(scores: dict[str, FloatArray]) -> dict[str, list[float] | list[int]]:
    """Counts of each score group over fixed bins (ends clipped in): small enough for a tag."""
    edges = np.asarray(HISTOGRAM_EDGES)
    counts: dict[str, list[float] | list[int]] = {"edges": list(HISTOGRAM_EDGES)}
    for name, values in scores.items():
        clipped = np.clip(values, edges[0], edges[-1])
        counts[name] = [int(c) for c in np.histogram(clipped, bins=edges)[0]]
    return counts


def privacy_summary(tags: Mapping[str, str]) -> dict[str, str]:
    """The `unlearn.privacy.*` tags of a version, by short key (`verdict`, `auc`, ...)."""
    prefix = "unlearn.privacy."
    return {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)}


def audit_tags(audit: dict[str, Any]) -> dict[str, str]:
    """The `privacy.*` tags from an audit's :meth:`MembershipAudit.to_dict` view."""

    def ci(estimate: Any) -> str:
        if not isinstance(estimate, dict):
            return "not measured"
        return f"{estimate['value']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"

    tags = {
        "privacy.verdict": str(audit["verdict"]),
        "privacy.reason": str(audit["reason"]),
        "privacy.method": str(audit.get("method", "offline")),
        "privacy.auc": ci(audit.get("auc")),
        "privacy.tpr_at_1pct_fpr": ci(audit.get("tpr_at_1pct_fpr")),
        "privacy.flagged": f"{audit['flagged']}/{audit['forgotten']}",
        "privacy.positive_control_tpr": ci(audit.get("positive_control_tpr_at_1pct_fpr")),
    }
    if audit.get("histogram"):
        tags["privacy.histogram"] = json.dumps(audit["histogram"], separators=(",", ":"))
    return tags


def _fraction_below(alpha: float) -> Any:
    def statistic(p_values: FloatArray, _: FloatArray) -> float:
        return float(np.mean(p_values < alpha))

    return statistic


def _tpr(fpr: float) -> Any:
    def statistic(positives: FloatArray, negatives: FloatArray) -> float:
        return tpr_at_fpr(positives, negatives, fpr)

    return statistic


def audit_membership(
    new: AuditSamples,
    parent: AuditSamples | None,
    *,
    alpha: float = 0.01,
    min_control_tpr: float = 0.10,
    significance: float = 0.05,
    resamples: int = 1000,
    seed: int = 0,
) -> MembershipAudit:
    """Test the forgotten records for membership in the new version, with both controls.

    Flags are counted against the null rate ``max(alpha, negative-control rate)``: the
    test may flag held-out records more often than ``alpha`` (heavy tails), and only an
    excess over what never-seen records get is evidence of membership. The verdict:
    ``fail`` when more forgotten records are flagged than Binomial(n, null rate) allows at
    `significance`; else ``inconclusive`` when the positive control is missing or finds
    fewer than `min_control_tpr` of the records at 1% FPR (the test has no power); else
    ``pass``.

    Args:
        new: the samples under the new version's models.
        parent: the same records under the parent version's models (positive control),
            or None when the parent is gone (then no pass is possible).
        alpha: per-record level of the test.
        min_control_tpr: the positive control's least TPR at 1% FPR.
        significance: level of the binomial test on the flag count.
        resamples: bootstrap resamples per interval.
        seed: seed of every bootstrap (the same inputs give the same numbers).
    """
    # The online test reads its null off the calibration records: it needs 1/alpha of them.
    min_calibration = math.ceil(1.0 / alpha)
    scores = score_membership(new, min_calibration)
    p_forgotten, p_heldout = scores.p_values("candidates"), scores.p_values("heldout")
    n, n_heldout = int(p_forgotten.size), int(p_heldout.size)
    flagged = int(np.sum(p_forgotten < alpha))
    null_rate = max(alpha, float(np.mean(p_heldout < alpha)))
    allowed = max_allowed_flags(n, null_rate, significance)

    def interval(statistic: Any, first: FloatArray, second: FloatArray) -> Estimate:
        return bootstrap_interval(statistic, first, second, resamples=resamples, seed=seed)

    auc = interval(roc_auc, scores.candidates, scores.heldout)
    tpr_1 = interval(_tpr(0.01), scores.candidates, scores.heldout)
    tpr_01 = interval(_tpr(0.001), scores.candidates, scores.heldout)
    fpr = interval(_fraction_below(alpha), p_heldout, p_heldout)
    control_auc = control_tpr = None
    plotted = {"forgotten": scores.candidates, "negative control": scores.heldout}
    if parent is not None:
        control = score_membership(parent, min_calibration)
        control_auc = interval(roc_auc, control.candidates, control.heldout)
        control_tpr = interval(_tpr(0.01), control.candidates, control.heldout)
        plotted["positive control"] = control.candidates

    verdict: Verdict
    if flagged > allowed:
        verdict = "fail"
        reason = (
            f"{flagged} of {n} forgotten records are flagged as members at alpha={alpha} "
            f"(at most {allowed} expected by chance): the new version still remembers them"
        )
    elif control_tpr is None:
        verdict = "inconclusive"
        reason = "no positive control: the parent version's models could not be read"
    elif control_tpr.value < min_control_tpr:
        verdict = "inconclusive"
        reason = (
            f"the positive control finds only {control_tpr.value:.1%} of the records in the "
            f"parent version at 1% FPR (below {min_control_tpr:.0%}): the test has no power here"
        )
    else:
        verdict = "pass"
        reason = (
            f"{flagged} of {n} forgotten records flagged at alpha={alpha} (at most {allowed} "
            f"allowed), while the parent version shows {control_tpr.value:.0%} of them at 1% FPR"
        )
    return MembershipAudit(
        verdict=verdict,
        reason=reason,
        forgotten=n,
        heldout=n_heldout,
        references=int(new.candidates.references.shape[0]),
        alpha=alpha,
        flagged=flagged,
        allowed=allowed,
        auc=auc,
        tpr_1=tpr_1,
        tpr_01=tpr_01,
        heldout_fpr=fpr,
        control_auc=control_auc,
        control_tpr_1=control_tpr,
        scores=plotted,
        method=scores.method,
    )

"""Privacy audits of forget versions: membership inference, release-pair risk, fairness.

Pure core (numpy, torch imported inside functions); reading versions goes through
:mod:`unlearn_ops.workflow`. :mod:`unlearn_ops.privacy.statistics` holds the numbers every
audit reports (AUC, TPR at low FPR, bootstrap intervals, binomial flag counts).
"""

from __future__ import annotations

from unlearn_ops.privacy.statistics import (
    Estimate,
    binomial_upper_tail,
    bootstrap_interval,
    max_allowed_flags,
    normal_sf,
    roc_auc,
    tpr_at_fpr,
)

__all__ = [
    "Estimate",
    "binomial_upper_tail",
    "bootstrap_interval",
    "max_allowed_flags",
    "normal_sf",
    "roc_auc",
    "tpr_at_fpr",
]

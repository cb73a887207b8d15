"""Privacy audits of forget versions: membership inference, release-pair risk, fairness.

Pure core (numpy, torch imported inside functions); reading versions goes through
:mod:`unlearn_ops.workflow`. :mod:`unlearn_ops.privacy.statistics` holds the numbers every
audit reports (AUC, TPR at low FPR, bootstrap intervals, binomial flag counts).
"""

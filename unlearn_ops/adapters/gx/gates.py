"""Promotion gates checked with great-expectations: the data, metric and fairness gates.

The gates themselves live in :mod:`~unlearn_ops.adapters.gx.data_gate`,
:mod:`~unlearn_ops.adapters.gx.metric_gate` and :mod:`~unlearn_ops.adapters.gx.fairness_gate`;
their results are core types (:mod:`unlearn_ops.serving.gates`), re-exported here for the
callers of this module. :class:`GxGateRunner` is the
:class:`~unlearn_ops.serving.gates.GateRunner` that runs them.

Importing this module does not import great_expectations (it costs seconds): each gate
imports it when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearn_ops.adapters.gx.data_gate import run_data_gate
from unlearn_ops.adapters.gx.fairness_gate import run_fairness_gate
from unlearn_ops.adapters.gx.metric_gate import run_metric_gate
from unlearn_ops.serving.gates import (
    DataGateEvidence,
    ExpectationOutcome,
    GateResult,
    HeldOutCorrectness,
    summarise_failures,
)

if TYPE_CHECKING:
    from unlearn_ops.params import GateParams
    from unlearn_ops.privacy.fairness import FairnessEvidence

__all__ = [
    "ExpectationOutcome",
    "GateResult",
    "GxGateRunner",
    "run_data_gate",
    "run_fairness_gate",
    "run_metric_gate",
    "summarise_failures",
]


class GxGateRunner:
    """The gates run by great-expectations, one ephemeral context per gate."""

    def run_data_gate(self, evidence: DataGateEvidence) -> GateResult:
        """See :func:`unlearn_ops.adapters.gx.data_gate.run_data_gate`."""
        return run_data_gate(evidence)

    def run_metric_gate(self, correctness: HeldOutCorrectness, gates: GateParams) -> GateResult:
        """See :func:`unlearn_ops.adapters.gx.metric_gate.run_metric_gate`."""
        return run_metric_gate(correctness, gates)

    def run_fairness_gate(self, evidence: FairnessEvidence, gates: GateParams) -> GateResult:
        """See :func:`unlearn_ops.adapters.gx.fairness_gate.run_fairness_gate`."""
        return run_fairness_gate(evidence, gates)

"""A fake :class:`~unlearn_ops.serving.gates.GateRunner`: the gates in plain pandas.

It reaches the verdicts the great-expectations adapter reaches (one contract test class
runs over both) without importing great_expectations, and it can be told to fail a gate,
so that a test of what follows a failed gate injects it instead of patching anything::

    gates = run_gates(workspace, metrics, baseline, gate_runner=FakeGateRunner(failing={"metric"}))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from typing import TYPE_CHECKING

from unlearn_ops.serving.gates import (
    DataGateEvidence,
    ExpectationOutcome,
    GateResult,
    HeldOutCorrectness,
    compare_with_champion,
    describe_floor,
)
from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.sisa.sharding import SLICE_COLUMN

if TYPE_CHECKING:
    from unlearn_ops.params import GateParams
    from unlearn_ops.privacy.fairness import FairnessEvidence

__all__ = ["FakeGateRunner"]


class FakeGateRunner:
    """The gates computed directly; `failing` names gates that fail whatever the data.

    Args:
        failing: gate names ("data", "metric", "fairness") whose result is a failure on purpose.

    Attributes:
        calls: the gates run so far, in order.
    """

    def __init__(self, failing: Collection[str] = ()) -> None:
        self.failing = frozenset(failing)
        self.calls: list[str] = []

    def run_data_gate(self, evidence: DataGateEvidence) -> GateResult:
        """The data gate's checks, one outcome each, as the adapter orders them."""
        self.calls.append("data")
        id_column, label_column = evidence.id_column, evidence.label_column
        ids: list[str | None] = []
        labels: list[object] = []
        for table in evidence.shard_tables.values():
            values = table[id_column].tolist() if id_column in table else [None] * len(table)
            ids.extend(None if _missing(v) else canonical_id(v) for v in values)
            labels.extend(table[label_column].tolist() if label_column in table else [])
        present = [i for i in ids if i is not None]
        forgotten = set(evidence.forgotten_hashes)
        remaining = sum(1 for i in present if evidence.hash_record_id(i) in forgotten)
        occurrences = Counter(present)
        shared = sum(1 for i in present if occurrences[i] > 1)
        classes = evidence.num_classes
        invalid = sum(1 for v in labels if not isinstance(v, int | float) or not 0 <= v < classes)
        outcomes = [
            _outcome("expect_column_values_to_not_be_in_set", f"{id_column}_hash", remaining),
            _outcome("expect_column_values_to_be_unique", id_column, shared),
            _outcome("expect_column_values_to_not_be_null", id_column, len(ids) - len(present)),
            _outcome("expect_column_values_to_be_between", label_column, invalid),
        ]
        expected = {id_column, SLICE_COLUMN, label_column, *evidence.feature_columns}
        for shard_id in sorted(evidence.shard_tables):
            table = evidence.shard_tables[shard_id]
            wrong = set(map(str, table.columns)) != expected
            outcomes.append(_outcome("expect_table_columns_to_match_set", None, int(wrong)))
            if evidence.expected_rows is not None:
                off = int(len(table) != evidence.expected_rows[shard_id])
                outcomes.append(_outcome("expect_table_row_count_to_equal", None, off))
        return self._result("data", outcomes)

    def run_metric_gate(self, correctness: HeldOutCorrectness, gates: GateParams) -> GateResult:
        """The floor, and the drop against the champion, by the core's comparison."""
        self.calls.append("metric")
        if not correctness.record_ids:
            raise ValueError("the held-out set has no record")
        accuracy = correctness.accuracy
        floor = accuracy >= gates.min_accuracy
        outcomes = [
            ExpectationOutcome(
                "expect_column_mean_to_be_between",
                "correct",
                floor,
                accuracy,
                describe_floor(accuracy, gates, floor),
            )
        ]
        if correctness.champion is not None:
            drop = compare_with_champion(correctness, gates)
            outcomes.append(
                ExpectationOutcome(
                    "expect_column_mean_to_be_between",
                    "accuracy_drop",
                    drop.passed,
                    drop.drop,
                    drop.describe(drop.passed),
                )
            )
        return self._result("metric", outcomes)

    def run_fairness_gate(self, evidence: FairnessEvidence, gates: GateParams) -> GateResult:
        """Class support, then each class and group by the core's comparison."""
        from unlearn_ops.privacy.fairness import (
            assess_cells,
            describe_sensitive_column,
            describe_support,
            missing_classes,
        )

        self.calls.append("fairness")
        if not evidence.correctness.record_ids:
            raise ValueError("the held-out set has no record")
        missing = missing_classes(evidence)
        outcomes = [
            ExpectationOutcome(
                "expect_column_distinct_values_to_contain_set",
                "class",
                not missing,
                missing,
                describe_support(missing, len(evidence.expected_classes)),
            )
        ]
        for cell in assess_cells(evidence, gates):
            outcomes.append(
                ExpectationOutcome(
                    "expect_column_mean_to_be_between",
                    "correct" if cell.comparison is None else "drop",
                    cell.passed,
                    cell.observed(),
                    cell.describe(cell.passed),
                )
            )
        if evidence.sensitive_column is not None:
            exists = evidence.groups is not None
            outcomes.append(
                ExpectationOutcome(
                    "expect_column_to_exist",
                    evidence.sensitive_column,
                    exists,
                    exists,
                    describe_sensitive_column(evidence.sensitive_column, exists),
                )
            )
        return self._result("fairness", outcomes)

    def _result(self, gate: str, outcomes: list[ExpectationOutcome]) -> GateResult:
        if gate in self.failing:
            outcomes.append(
                ExpectationOutcome("fake", None, False, None, f"the {gate} gate fails on purpose")
            )
        return GateResult.from_outcomes(gate, outcomes)


def _outcome(expectation: str, column: str | None, failing: int) -> ExpectationOutcome:
    found = "nothing wrong" if not failing else f"{failing} failing"
    return ExpectationOutcome(expectation, column, not failing, failing, found)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)

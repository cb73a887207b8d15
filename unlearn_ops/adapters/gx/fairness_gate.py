"""The fairness gate, checked with great-expectations on the per-record held-out frame.

The frame (:func:`unlearn_ops.privacy.fairness.fairness_frame`) has one row per held-out
record: its `class`, its `group` when `dataset.sensitive_column` is set, `correct`, and with
a champion `champion_correct` and `drop`. Each class and each group is one expectation on
its own rows (a row condition): the mean of `drop` on them is the cell's recall (or
accuracy) drop, checked against the tolerance the core derives from the limit, the records
that changed and the Bonferroni-corrected level; a cell that is only reported (no champion,
a small group) has the mean of `correct` measured instead. A second, one-column frame of
the new version's training labels must contain every class the data holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from unlearn_ops.adapters.gx.context import (
    could_not_run,
    gate_error,
    outcome_of,
    type_of,
    validating,
    validation_definition,
)
from unlearn_ops.params import GateParams
from unlearn_ops.privacy.fairness import (
    CLASS_COLUMN,
    CORRECT_COLUMN,
    DROP_COLUMN,
    GROUP_COLUMN,
    FairnessCell,
    FairnessEvidence,
    assess_cells,
    describe_sensitive_column,
    describe_support,
    fairness_frame,
    missing_classes,
)
from unlearn_ops.serving.gates import ExpectationOutcome, GateResult

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation import Expectation

__all__ = ["run_fairness_gate"]


def run_fairness_gate(evidence: FairnessEvidence, gates: GateParams) -> GateResult:
    """Validate per-class recall, per-group accuracy and class support with great-expectations.

    Example::

        evidence = FairnessEvidence(
            correctness=HeldOutCorrectness(("1", "2"), (True, False), (True, True)),
            labels=(0, 1),
            training_classes={0: 5, 1: 5},
            expected_classes=(0, 1),
        )
        run_fairness_gate(evidence, GateParams()).passed  # True: one record is no evidence

    Args:
        evidence: the held-out records, per record, and the classes of the training data.
        gates: the thresholds from `params.yaml` (`gates.fairness`, `gates.significance`).

    Returns:
        The gate's result: the class-support outcome, then one outcome per class and per
        group (classes in label order, groups by name), then, when the held-out table
        lacks `dataset.sensitive_column`, that failure.

    Raises:
        StoreError: there is no held-out record, or great-expectations itself failed.
    """
    if not evidence.correctness.record_ids:
        raise gate_error(
            "fairness", "the held-out set has no record", "evaluate on a non-empty held-out set"
        )
    cells = assess_cells(evidence, gates)
    frame = fairness_frame(evidence)
    training = pd.DataFrame(
        {
            CLASS_COLUMN: [
                label for label, count in evidence.training_classes.items() for _ in range(count)
            ]
        },
        dtype="int64",
    )

    from great_expectations.expectations import (  # type: ignore[attr-defined]
        ExpectColumnDistinctValuesToContainSet,
        ExpectColumnMeanToBeBetween,
        ExpectColumnToExist,
    )
    from great_expectations.expectations.row_conditions import Column

    with validating("fairness") as context:
        expectations: list[Expectation] = []
        for cell in cells:
            selected = Column(cell.column) == cell.value
            if cell.comparison is None:
                expectations.append(
                    ExpectColumnMeanToBeBetween(
                        column=CORRECT_COLUMN, min_value=0.0, max_value=1.0, row_condition=selected
                    )
                )
            else:
                expectations.append(
                    ExpectColumnMeanToBeBetween(
                        column=DROP_COLUMN,
                        max_value=cell.comparison.tolerance,
                        row_condition=selected,
                    )
                )
        if evidence.sensitive_column is not None:
            expectations.append(ExpectColumnToExist(column=GROUP_COLUMN))
        held_out = validation_definition(context, "fairness", expectations)
        run = held_out.run(batch_parameters={"dataframe": frame})
        support = validation_definition(
            context,
            "fairness-support",
            [
                ExpectColumnDistinctValuesToContainSet(
                    column=CLASS_COLUMN, value_set=list(evidence.expected_classes)
                )
            ],
        )
        (support_result,) = support.run(batch_parameters={"dataframe": training}).results

    missing = missing_classes(evidence)
    outcomes = [
        could_not_run(support_result, "the training labels")
        or ExpectationOutcome(
            type_of(support_result),
            CLASS_COLUMN,
            bool(support_result.success),
            missing,
            describe_support(missing, len(evidence.expected_classes)),
        )
    ]
    by_cell = {_selection(result): result for result in run.results}
    outcomes.extend(_cell_outcome(by_cell[(cell.column, cell.value)], cell) for cell in cells)
    if evidence.sensitive_column is not None:
        exists = by_cell[(None, None)]
        outcomes.append(
            ExpectationOutcome(
                type_of(exists),
                evidence.sensitive_column,
                bool(exists.success),
                evidence.groups is not None,
                describe_sensitive_column(evidence.sensitive_column, bool(exists.success)),
            )
        )
    return GateResult.from_outcomes("fairness", outcomes)


def _selection(result: ExpectationValidationResult) -> tuple[str | None, Any]:
    """The (column, value) of a result's row condition; (None, None) without one."""
    config = result.expectation_config
    condition: Any = None if config is None else config.kwargs.get("row_condition")
    if condition is None:
        return None, None
    if not isinstance(condition, dict):
        condition = condition.dict()
    return str(condition["column"]["name"]), condition["parameter"]


def _cell_outcome(result: ExpectationValidationResult, cell: FairnessCell) -> ExpectationOutcome:
    return outcome_of(
        result,
        f"the held-out records of {cell.label}",
        column=CORRECT_COLUMN if cell.comparison is None else DROP_COLUMN,
        observed=cell.observed(),
        describe=cell.describe,
    )

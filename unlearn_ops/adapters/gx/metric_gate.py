"""The metric gate, checked with great-expectations on the per-record held-out frame.

The frame has one row per held-out record: `correct` (1 when the candidate predicts its
label) and, with a champion, `champion_correct` and `accuracy_drop` (champion's
correctness minus the candidate's, -1, 0 or 1). The mean of `correct` is the held-out
accuracy, checked against `gates.min_accuracy`; the mean of `accuracy_drop` is the drop
against the champion on the same records, checked against the tolerance that
:func:`unlearn_ops.serving.gates.compare_with_champion` derives from the limit and from
how many records changed (a drop that chance explains passes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from unlearn_ops.adapters.gx.context import (
    column_of,
    gate_error,
    outcome_of,
    validating,
    validation_definition,
)
from unlearn_ops.params import GateParams
from unlearn_ops.serving.gates import (
    GateResult,
    HeldOutCorrectness,
    compare_with_champion,
    describe_floor,
)

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

__all__ = ["run_metric_gate"]

_CORRECT = "correct"
_DROP = "accuracy_drop"
_WHERE = "the held-out records"


def run_metric_gate(correctness: HeldOutCorrectness, gates: GateParams) -> GateResult:
    """Validate held-out accuracy, and the drop against the champion, with great-expectations.

    The accuracy must reach `gates.min_accuracy`. With a champion, the drop on the same
    records fails the gate only when it exceeds `gates.max_accuracy_drop` and is
    significant at `gates.significance` (see :mod:`unlearn_ops.serving.gates`).

    Example::

        correctness = HeldOutCorrectness(
            record_ids=("1", "2", "3"),
            candidate=(True, True, False),
            champion=(True, True, True),
        )
        result = run_metric_gate(correctness, GateParams(min_accuracy=0.5))
        result.passed  # True: one changed record out of three is not significant

    Args:
        correctness: per held-out record, whether the candidate (and the champion) is right.
        gates: the thresholds from `params.yaml`.

    Returns:
        The gate's result: the floor outcome, then the drop outcome when there is a champion.

    Raises:
        StoreError: there is no held-out record, or great-expectations itself failed.
    """
    if not correctness.record_ids:
        raise gate_error(
            "metric", "the held-out set has no record", "evaluate on a non-empty held-out set"
        )
    frame = pd.DataFrame(
        {
            "record_id": pd.Series(correctness.record_ids, dtype=object),
            _CORRECT: np.asarray(correctness.candidate, dtype=np.int64),
        }
    )
    comparison = None
    if correctness.champion is not None:
        comparison = compare_with_champion(correctness, gates)
        frame["champion_correct"] = np.asarray(correctness.champion, dtype=np.int64)
        frame[_DROP] = frame["champion_correct"] - frame[_CORRECT]

    from great_expectations.expectations import (  # type: ignore[attr-defined]
        ExpectColumnMeanToBeBetween,
    )

    with validating("metric") as context:
        expectations: list[Expectation] = [
            ExpectColumnMeanToBeBetween(column=_CORRECT, min_value=gates.min_accuracy)
        ]
        if comparison is not None:
            expectations.append(
                ExpectColumnMeanToBeBetween(column=_DROP, max_value=comparison.tolerance)
            )
        validation = validation_definition(context, "metrics", expectations)
        run = validation.run(batch_parameters={"dataframe": frame})

    results = {column_of(result): result for result in run.results}
    accuracy = correctness.accuracy
    outcomes = [
        outcome_of(
            results[_CORRECT],
            _WHERE,
            column=_CORRECT,
            observed=accuracy,
            describe=lambda passed: describe_floor(accuracy, gates, passed),
        )
    ]
    if comparison is not None:
        outcomes.append(
            outcome_of(
                results[_DROP],
                _WHERE,
                column=_DROP,
                observed=comparison.drop,
                describe=comparison.describe,
            )
        )
    return GateResult.from_outcomes("metric", outcomes)

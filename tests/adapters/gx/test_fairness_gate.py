"""The fairness gate in great-expectations: one expectation per class and group, class support.

Real great-expectations on tiny frames; each result is read back into the outcome of its
own class or group (the row condition says which).
"""

from __future__ import annotations

import pytest

from unlearn_ops.adapters.gx.fairness_gate import run_fairness_gate
from unlearn_ops.errors import StoreError
from unlearn_ops.params import GateParams
from unlearn_ops.privacy.fairness import FairnessEvidence
from unlearn_ops.serving.gates import HeldOutCorrectness, summarise_failures

GATES = GateParams.model_validate({"fairness": {"min_group_size": 10}})


def make_evidence(
    labels: list[int],
    candidate: list[bool],
    champion: list[bool] | None,
    *,
    groups: list[str] | None = None,
    sensitive_column: str | None = None,
    training_classes: dict[int, int] | None = None,
    expected: tuple[int, ...] | None = None,
) -> FairnessEvidence:
    ids = tuple(str(index) for index in range(len(labels)))
    present = training_classes or {label: 3 for label in sorted(set(labels))}
    return FairnessEvidence(
        HeldOutCorrectness(ids, tuple(candidate), None if champion is None else tuple(champion)),
        tuple(labels),
        None if groups is None else tuple(groups),
        sensitive_column=sensitive_column,
        training_classes=present,
        expected_classes=tuple(sorted(present)) if expected is None else expected,
    )


def test_a_class_whose_recall_collapses_fails_and_is_named() -> None:
    labels = [0] * 20 + [1] * 20 + [2] * 20
    candidate = [True] * 20 + [False] * 20 + [True] * 20
    result = run_fairness_gate(make_evidence(labels, candidate, [True] * 60), GATES)
    assert result.gate == "fairness"
    assert not result.passed
    support, *classes = result.outcomes
    assert support.expectation == "expect_column_distinct_values_to_contain_set"
    assert support.success
    assert [(o.column, o.success) for o in classes] == [
        ("drop", True),
        ("drop", False),
        ("drop", True),
    ]
    assert classes[1].observed["class"] == 1
    assert classes[1].observed["recall"] == 0.0
    assert classes[1].observed["champion_recall"] == 1.0
    assert classes[1].observed["drop"] == 1.0
    summary = summarise_failures([result])
    assert summary.startswith("gate 'fairness' failed: expect_column_mean_to_be_between on drop")
    assert "(class 1: recall drop 1.0000 (recall 0.0000 against the champion's 1.0000" in summary


def test_groups_are_gated_from_their_minimum_size_and_reported_below_it() -> None:
    labels = [0] * 30
    groups = ["a"] * 12 + ["b"] * 12 + ["c"] * 6
    candidate = [True] * 12 + [False] * 12 + [False] * 6
    result = run_fairness_gate(
        make_evidence(labels, candidate, [True] * 30, groups=groups, sensitive_column="sex"),
        GATES,
    )
    outcomes = {str(o.observed.get("group")): o for o in result.outcomes[2:-1]}
    assert outcomes["a"].success
    assert not outcomes["b"].success
    assert outcomes["c"].success  # six records: reported only, whatever its accuracy
    assert outcomes["c"].column == "correct"
    assert outcomes["c"].observed == {
        "group": "c",
        "records": 6,
        "accuracy": 0.0,
        "champion_accuracy": 1.0,
    }
    assert "reported, not gated" in outcomes["c"].description
    sensitive = result.outcomes[-1]
    assert (sensitive.expectation, sensitive.column, sensitive.success) == (
        "expect_column_to_exist",
        "sex",
        True,
    )


def test_without_a_champion_the_cells_are_measured_and_pass() -> None:
    result = run_fairness_gate(make_evidence([0, 0, 1], [True, False, False], None), GATES)
    assert result.passed
    assert [o.observed["recall"] for o in result.outcomes[1:]] == [0.5, 0.0]


def test_a_class_without_training_records_fails_the_support_check() -> None:
    evidence = make_evidence(
        [0, 1], [True, True], [True, True], training_classes={0: 4}, expected=(0, 1, 2)
    )
    result = run_fairness_gate(evidence, GATES)
    support = result.outcomes[0]
    assert not support.success
    assert support.observed == [1, 2]
    assert support.description.startswith("classes 1, 2: no training record left")


def test_a_held_out_table_without_the_sensitive_column_fails_the_gate() -> None:
    evidence = make_evidence([0, 1], [True, True], [True, True], sensitive_column="sex")
    result = run_fairness_gate(evidence, GATES)
    assert not result.passed
    failure = result.failures()[0]
    assert (failure.expectation, failure.column) == ("expect_column_to_exist", "sex")
    assert "prepare the data again" in failure.description


def test_an_empty_held_out_set_cannot_be_gated() -> None:
    with pytest.raises(StoreError, match="the held-out set has no record"):
        run_fairness_gate(make_evidence([], [], None), GATES)

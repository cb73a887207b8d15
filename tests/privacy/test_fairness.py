"""The fairness core: per-class recall, per-group accuracy, small groups, vanished classes,
and the sensitive column's way from the dataset to the held-out table (not to training)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy.stats import binom

from tests.workflow.conftest import new_root, open_with_fakes, trained_root
from unlearn_ops.errors import ConfigError, DatasetError
from unlearn_ops.params import GateParams, Params
from unlearn_ops.privacy.fairness import (
    FairnessEvidence,
    assess_cells,
    collect_fairness_evidence,
    fairness_frame,
    missing_classes,
    read_source_classes,
)
from unlearn_ops.serving.gates import HeldOutCorrectness
from unlearn_ops.sisa.datasets import MISSING_GROUP, Dataset, load_dataset, split_holdout
from unlearn_ops.testing.gates import FakeGateRunner
from unlearn_ops.workflow.preparation import prepare_data
from unlearn_ops.workflow.retraining import run_gates

__all__ = ["trained_root"]  # the workflow tests' trained workspace, shared here

GATES = GateParams.model_validate(
    {
        "significance": 0.05,
        "fairness": {
            "max_class_recall_drop": 0.1,
            "max_group_accuracy_drop": 0.05,
            "min_group_size": 10,
        },
    }
)


def evidence(
    labels: list[int],
    candidate: list[bool],
    champion: list[bool] | None = None,
    groups: list[str] | None = None,
) -> FairnessEvidence:
    ids = tuple(str(index) for index in range(len(labels)))
    return FairnessEvidence(
        HeldOutCorrectness(ids, tuple(candidate), None if champion is None else tuple(champion)),
        tuple(labels),
        None if groups is None else tuple(groups),
        training_classes={label: 5 for label in set(labels)},
        expected_classes=tuple(sorted(set(labels))),
    )


# --------------------------------------------------------------------- recall, accuracy


def test_per_class_recall_is_the_accuracy_on_the_records_of_each_class() -> None:
    labels = [0, 0, 0, 0, 1, 1, 2]
    candidate = [True, True, True, False, True, False, False]
    champion = [True, True, True, True, True, True, True]
    cells = assess_cells(evidence(labels, candidate, champion), GATES)
    assert [(c.kind, c.value, c.records) for c in cells] == [
        ("class", 0, 4),
        ("class", 1, 2),
        ("class", 2, 1),
    ]
    assert [c.accuracy for c in cells] == [0.75, 0.5, 0.0]
    assert [c.champion_accuracy for c in cells] == [1.0, 1.0, 1.0]
    assert [c.observed()["recall"] for c in cells] == [0.75, 0.5, 0.0]
    # One changed record per class is no evidence: all three pass, with their drops named.
    assert all(c.gated and c.passed for c in cells)
    assert cells[1].describe(True).startswith("class 1: recall drop 0.5000 (recall 0.5000")


def test_per_group_accuracy_counts_every_record_of_the_group_whatever_its_class() -> None:
    labels = [0, 1] * 10 + [0, 1] * 5
    groups = ["a"] * 20 + ["b"] * 10
    candidate = [True] * 20 + [False] * 8 + [True] * 2
    cells = assess_cells(evidence(labels, candidate, [True] * 30, groups), GATES)
    by_group = {c.value: c for c in cells if c.kind == "group"}
    assert (by_group["a"].records, by_group["a"].accuracy) == (20, 1.0)
    assert (by_group["b"].records, by_group["b"].accuracy) == (10, 0.2)
    assert by_group["b"].label == "group 'b'"
    # 8 of 10 records worse and none better: far past the 5-point limit, and significant
    # (mid-p 1/512) at 0.05 over the four cells gated (two classes, two groups).
    assert not by_group["b"].passed
    assert by_group["a"].passed


def test_the_frame_has_one_row_per_record_with_class_group_and_drop() -> None:
    frame = fairness_frame(evidence([0, 1], [True, False], [True, True], ["x", "y"]))
    assert list(frame.columns) == [
        "record_id",
        "class",
        "group",
        "correct",
        "champion_correct",
        "drop",
    ]
    assert frame["drop"].tolist() == [0, 1]
    assert list(fairness_frame(evidence([0], [True])).columns) == ["record_id", "class", "correct"]


# ------------------------------------------------------------------------- statistics


def test_each_cell_is_tested_at_the_bonferroni_level_with_the_mid_p_mcnemar_test() -> None:
    labels = [0] * 40 + [1] * 40
    champion = [True] * 80
    # Class 0: 6 of 40 worse, none better (15 points, over the 10-point limit).
    candidate = [index >= 6 for index in range(40)] + [True] * 40
    (zero, one) = assess_cells(evidence(labels, candidate, champion), GATES)
    assert zero.comparison is not None
    assert zero.comparison.significance == pytest.approx(0.05 / 2)
    mid_p = binom.sf(6, 6, 0.5) + 0.5 * binom.pmf(6, 6, 0.5)
    assert zero.comparison.p_value == pytest.approx(mid_p)  # 1/128, below 0.025
    assert not zero.passed
    assert zero.describe(False).endswith("is significant at level 0.025")
    assert one.passed


def test_the_correction_decides_a_drop_that_one_test_alone_would_fail() -> None:
    # 4 of 20 worse: 20 points, mid-p 1/32, significant at 0.05 but not at 0.05 / 2.
    four_worse = [index >= 4 for index in range(20)]
    (alone,) = assess_cells(evidence([0] * 20, four_worse, [True] * 20), GATES)
    assert not alone.passed
    (zero, _) = assess_cells(
        evidence([0] * 20 + [1] * 20, four_worse + [True] * 20, [True] * 40), GATES
    )
    assert zero.passed
    assert "but not significantly" in zero.describe(True)


def test_a_small_group_is_reported_but_never_gated() -> None:
    labels = [0] * 30
    groups = ["big"] * 21 + ["small"] * 9  # min_group_size is 10
    candidate = [True] * 21 + [False] * 9
    cells = assess_cells(evidence(labels, candidate, [True] * 30, groups), GATES)
    small = next(c for c in cells if c.value == "small")
    assert (small.gated, small.passed, small.accuracy) == (False, True, 0.0)
    assert "reported, not gated: fewer than gates.fairness.min_group_size (10)" in (
        small.describe(True)
    )
    # The class of all 30 records is gated, and its 9 losses fail it.
    assert not next(c for c in cells if c.kind == "class").passed
    # Only the class and the big group count towards the correction.
    big = next(c for c in cells if c.value == "big")
    assert big.comparison is not None
    assert big.comparison.significance == pytest.approx(0.05 / 2)


def test_without_a_champion_every_cell_is_reported() -> None:
    cells = assess_cells(evidence([0, 1], [True, False], None, ["a", "b"]), GATES)
    assert all(not c.gated and c.passed for c in cells)
    assert cells[0].describe(True) == (
        "class 0: recall 1.0000 on 1 held-out records; reported, not gated: "
        "no champion to compare with"
    )


# ------------------------------------------------------------------ vanished classes


def holdout_frame(labels: list[int], groups: list[object] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"record_id": range(len(labels)), "label": labels})
    if groups is not None:
        frame["sex"] = groups
    return frame


def correct(count: int) -> HeldOutCorrectness:
    return HeldOutCorrectness(tuple(map(str, range(count))), (True,) * count, (True,) * count)


def test_a_class_with_no_record_left_is_expected_only_if_the_source_had_it() -> None:
    asked: list[bool] = []

    def source() -> set[int]:
        asked.append(True)
        return {0, 1, 3}  # the source never had label 2

    found = collect_fairness_evidence(
        holdout_frame([0, 1]),
        correct(2),
        label_column="label",
        num_classes=4,
        training_labels=[0, 0, 1],
        source_classes=source,
    )
    assert asked == [True]
    assert found.expected_classes == (0, 1, 3)
    assert missing_classes(found) == [3]
    # Every label present: the source is not read.
    collect_fairness_evidence(
        holdout_frame([0, 1]),
        correct(2),
        label_column="label",
        num_classes=2,
        training_labels=[0, 1],
        source_classes=source,
    )
    assert asked == [True]


def test_a_class_left_only_in_the_held_out_set_has_lost_its_training_records() -> None:
    found = collect_fairness_evidence(
        holdout_frame([0, 1]), correct(2), label_column="label", num_classes=2, training_labels=[0]
    )
    assert missing_classes(found) == [1]


def test_groups_come_from_the_held_out_table_as_text() -> None:
    found = collect_fairness_evidence(
        holdout_frame([0, 0, 0], ["f", 2.0, None]),
        correct(3),
        label_column="label",
        num_classes=1,
        training_labels=[0],
        sensitive_column="sex",
    )
    assert found.groups == ("f", "2", MISSING_GROUP)
    absent = collect_fairness_evidence(
        holdout_frame([0]),
        correct(1),
        label_column="label",
        num_classes=1,
        training_labels=[0],
        sensitive_column="sex",
    )
    assert (absent.groups, absent.sensitive_column) == (None, "sex")


def test_the_source_classes_of_digits_and_of_an_unreadable_file() -> None:
    assert read_source_classes(Params()) == set(range(10))
    missing = Params.from_mapping({"dataset": {"source": "nowhere.csv"}})
    assert read_source_classes(missing, Path("/nonexistent")) is None


# ---------------------------------------------------------------- the sensitive column


def table_with_group() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_id": range(40),
            "label": [i % 2 for i in range(40)],
            "sex": ["f", "m"] * 20,
            "f0": [float(i) for i in range(40)],
        }
    )


def test_the_sensitive_column_travels_to_the_held_out_set_and_never_to_training() -> None:
    dataset = Dataset.from_frame(table_with_group(), sensitive_column="sex")
    assert dataset.feature_columns == ("f0",)
    train, holdout = split_holdout(dataset, 0.3, "salt")
    assert "sex" in holdout.frame.columns
    assert holdout.sensitive_column == "sex"
    assert "sex" not in train.frame.columns
    assert train.sensitive_column is None
    # Without it the training split is the same table: shard files do not change.
    plain_train, _ = split_holdout(
        Dataset.from_frame(table_with_group().drop(columns=["sex"])), 0.3, "salt"
    )
    pd.testing.assert_frame_equal(train.frame, plain_train.frame)


def test_a_sensitive_column_the_data_lacks_is_one_clear_error() -> None:
    with pytest.raises(DatasetError, match=r"no column 'race' \(dataset.sensitive_column\)"):
        Dataset.from_frame(table_with_group(), sensitive_column="race")
    with pytest.raises(DatasetError, match="a built-in dataset has no group attribute"):
        load_dataset("digits", sensitive_column="sex")
    with pytest.raises(DatasetError, match="is also a feature column"):
        Dataset.from_frame(
            table_with_group(), feature_columns=["f0", "sex"], sensitive_column="sex"
        )
    with pytest.raises(ConfigError, match="sensitive_column 'label' is the id, the label"):
        Params.from_mapping({"dataset": {"sensitive_column": "label"}})


def set_dataset(root: Path, **values: object) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["dataset"].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_prepare_keeps_the_group_in_the_held_out_table_and_refuses_a_missing_one(
    tmp_path: Path,
) -> None:
    root = new_root(tmp_path / "ws")
    frame = pd.read_csv(root / "records.csv")
    frame["sex"] = ["f", "m", "x"] * (len(frame) // 3)
    frame.to_csv(root / "records.csv", index=False)
    set_dataset(root, sensitive_column="sex")
    ws = open_with_fakes(root)
    prepare_data(ws)
    assert "sex" in ws.ensemble.read_holdout().columns
    assert "sex" not in ws.ensemble.read_shard(0).columns
    assert "sex" not in ws.ensemble.columns().feature_columns

    other = new_root(tmp_path / "other")
    set_dataset(other, sensitive_column="sex")
    with pytest.raises(DatasetError, match=r"no column 'sex' \(dataset.sensitive_column\)"):
        prepare_data(open_with_fakes(other))
    assert not (other / "data" / "shards").exists()


def test_run_gates_adds_the_fairness_gate_unless_params_turn_it_off(
    tmp_path: Path, trained_root: Path
) -> None:
    import shutil

    root = tmp_path / "ws"
    shutil.copytree(trained_root, root)
    runner = FakeGateRunner()
    gates = run_gates(open_with_fakes(root), {}, None, gate_runner=runner)
    assert [g.gate for g in gates] == ["data", "metric", "fairness"]
    fairness = gates[2]
    assert fairness.passed
    # Support, then the three classes of the synthetic blobs, measured without a champion.
    assert [o.observed.get("class") for o in fairness.outcomes[1:]] == [0, 1, 2]

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["gates"]["fairness"] = {"enabled": False}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    runner = FakeGateRunner()
    assert [g.gate for g in run_gates(open_with_fakes(root), {}, None, runner)] == [
        "data",
        "metric",
    ]
    assert runner.calls == ["data", "metric"]

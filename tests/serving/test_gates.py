"""The metric comparison (mid-p McNemar), the held-out size warning, and the GateRunner contract.

The statistics are checked against scipy, computed independently; the contract class runs
every scenario over the great-expectations adapter and the shipped fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import binom

from unlearn_ops.adapters.gx.gates import GxGateRunner
from unlearn_ops.params import GateParams, Params
from unlearn_ops.privacy.fairness import FairnessEvidence
from unlearn_ops.serving.gates import (
    DataGateEvidence,
    ExpectationOutcome,
    GateResult,
    GateRunner,
    HeldOutCorrectness,
    compare_with_champion,
    held_out_correctness,
    holdout_size_warning,
    smallest_significant_drop,
    workspace_holdout_warning,
)
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.datasets import load_dataset, split_holdout
from unlearn_ops.testing.gates import FakeGateRunner

GATES = GateParams(min_accuracy=0.5, max_accuracy_drop=0.02, significance=0.05)


def paired(records: int, *, worse: int = 0, better: int = 0) -> HeldOutCorrectness:
    """Champion wrong on its first `better` records (which the candidate gets right), the
    candidate wrong on the last `worse` (which the champion gets right)."""
    champion = tuple(index >= better for index in range(records))
    candidate = tuple(index < records - worse for index in range(records))
    return HeldOutCorrectness(tuple(map(str, range(records))), candidate, champion)


# ------------------------------------------------------------------------- statistics


def scipy_mid_p(worse: int, changed: int, p: float = 0.5) -> float:
    return float(binom.sf(worse, changed, p) + 0.5 * binom.pmf(worse, changed, p))


@pytest.mark.parametrize(
    ("worse", "better", "p_value"),
    [(4, 0, 1 / 32), (3, 0, 1 / 16), (1, 0, 1 / 4), (6, 2, 23 / 256), (0, 0, 1 / 2)],
)
def test_the_p_value_is_the_one_sided_mid_p_of_mcnemar(
    worse: int, better: int, p_value: float
) -> None:
    assert compare_with_champion(paired(36, worse=worse, better=better), GATES).p_value == (
        pytest.approx(p_value, rel=1e-12)
    )


@pytest.mark.parametrize(("worse", "better"), [(4, 0), (6, 2), (3, 5), (20, 7), (0, 9)])
def test_the_interval_is_the_mid_p_interval_scipy_finds(worse: int, better: int) -> None:
    records, changed, alpha = 200, worse + better, GATES.significance
    drop = compare_with_champion(paired(records, worse=worse, better=better), GATES)

    def bound(proportion: float) -> float:
        return changed * (2 * proportion - 1) / records

    low = 0.0 if worse == 0 else brentq(lambda p: scipy_mid_p(worse, changed, p) - alpha, 0, 1)
    high = (
        1.0
        if worse == changed
        else brentq(lambda p: 1 - scipy_mid_p(worse, changed, p) - alpha, 0, 1)
    )
    assert drop.low == pytest.approx(bound(low), abs=1e-9)
    assert drop.high == pytest.approx(bound(high), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    records=st.integers(1, 300),
    worse_share=st.floats(0, 1),
    better_share=st.floats(0, 1),
    limit=st.sampled_from([0.0, 0.02, 0.05, 0.2]),
    alpha=st.sampled_from([0.01, 0.05, 0.1]),
)
def test_the_rule_fails_a_drop_over_the_limit_only_when_it_is_significant(
    records: int, worse_share: float, better_share: float, limit: float, alpha: float
) -> None:
    worse = int(worse_share * records)
    better = int(better_share * (records - worse))
    gates = GateParams(max_accuracy_drop=limit, significance=alpha)

    drop = compare_with_champion(paired(records, worse=worse, better=better), gates)

    significant = scipy_mid_p(worse, worse + better) < alpha
    assert drop.passed is not (drop.drop > limit and significant)
    assert drop.low <= drop.drop <= drop.high
    if worse + better:
        # The interval and the test agree: the drop is significant when its lower bound
        # is above zero.
        assert (drop.low > 0) is significant


def test_a_comparison_needs_a_champion() -> None:
    alone = HeldOutCorrectness(("1",), (True,))
    with pytest.raises(ValueError, match="champion"):
        compare_with_champion(alone, GATES)


def test_correctness_of_unequal_lengths_is_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        HeldOutCorrectness(("1", "2"), (True,), (True, False))


def test_held_out_correctness_pairs_the_predictions_record_by_record() -> None:
    holdout = pd.DataFrame(
        {
            "record_id": [10, 11, 12, 13],
            "label": [0, 1, 2, 1],
            "f0": np.array([0.0, 1.0, 2.0, 1.0], dtype=np.float32),
        }
    )
    seen: list[pd.DataFrame] = []

    def champion(frame: pd.DataFrame) -> pd.Series:
        seen.append(frame)
        return pd.Series([0, 1, 0, 0])

    correctness = held_out_correctness(
        holdout,
        id_column="record_id",
        label_column="label",
        feature_columns=("f0",),
        predict_candidate=lambda frame: frame["f0"].to_numpy().astype(int),
        predict_champion=champion,
    )

    assert correctness.record_ids == ("10", "11", "12", "13")
    assert correctness.candidate == (True, True, True, True)
    assert correctness.champion == (True, True, False, False)
    assert list(seen[0].columns) == ["f0"]  # features only: no id, no label


# ------------------------------------------------------------------ held-out size warning


def test_the_smallest_significant_drop_needs_four_records_at_five_percent() -> None:
    assert smallest_significant_drop(36, 0.05) == pytest.approx(4 / 36)
    assert smallest_significant_drop(36, 0.01) == pytest.approx(6 / 36)  # 0.5 ** 7 < 0.01


def test_a_held_out_set_of_36_records_is_too_small_for_the_default_limit() -> None:
    warning = holdout_size_warning(36, GateParams())

    assert warning == (
        "the held-out set has 36 records: one changed prediction moves accuracy by 0.0278 "
        "and the metric gate can tell only drops of 0.1111 (4 records) or more from chance "
        "at gates.significance 0.05, so gates.max_accuracy_drop 0.02 is not enforced below "
        "that; about 200 held-out records are needed: raise dataset.holdout_fraction or "
        "gates.max_accuracy_drop, or use more data"
    )
    assert holdout_size_warning(200, GateParams()) is None
    assert holdout_size_warning(199, GateParams()) is not None
    assert holdout_size_warning(36, GateParams(max_accuracy_drop=0.12)) is None


def test_the_wine_table_gets_the_warning_and_digits_does_not(tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame.rename(columns={"target": "label"})
    wine.insert(0, "record_id", range(len(wine)))
    wine.to_csv(tmp_path / "wine.csv", index=False)
    params = Params.from_mapping({"dataset": {"source": "wine.csv"}})

    warning = workspace_holdout_warning(params, base_dir=tmp_path)

    dataset = load_dataset(tmp_path / "wine.csv")
    _, holdout = split_holdout(dataset, 0.2, f"{params.sisa.salt}:{params.seed}")
    assert 0 < len(holdout) < 200  # 178 records, a fifth held out by hash
    assert warning is not None
    assert warning.startswith(f"the held-out set has {len(holdout)} records")
    assert workspace_holdout_warning(Params()) is None  # digits: 1,797 records
    # An unreadable dataset is `train`'s to report.
    missing = Params.from_mapping({"dataset": {"source": "absent.csv"}})
    assert workspace_holdout_warning(missing, base_dir=tmp_path) is None


# --------------------------------------------------------------------- the contract

hash_record_id = Settings(id_hash_key="contract-key").hash_record_id


def shards(ids_per_shard: Mapping[int, Sequence[object]]) -> dict[int, pd.DataFrame]:
    return {
        shard_id: pd.DataFrame(
            {
                "record_id": list(ids),
                "slice_id": [0] * len(ids),
                "label": [index % 3 for index in range(len(ids))],
                "f0": np.arange(len(ids), dtype=np.float32),
            }
        )
        for shard_id, ids in ids_per_shard.items()
    }


@pytest.fixture(params=["great-expectations", "fake"])
def runner(request: pytest.FixtureRequest) -> GateRunner:
    made: dict[str, Callable[[], GateRunner]] = {
        "great-expectations": GxGateRunner,
        "fake": FakeGateRunner,
    }
    return made[request.param]()


def failing(result: GateResult) -> list[tuple[str, str | None]]:
    return [(outcome.expectation, outcome.column) for outcome in result.failures()]


class TestGateRunnerContract:
    """What every GateRunner does: the verdicts and which expectations fail."""

    def data_gate(
        self,
        runner: GateRunner,
        tables: Mapping[int, pd.DataFrame],
        forgotten: Sequence[object] = (),
        expected_rows: Mapping[int, int] | None = None,
    ) -> GateResult:
        return runner.run_data_gate(
            DataGateEvidence(
                tables,
                id_column="record_id",
                label_column="label",
                feature_columns=("f0",),
                num_classes=3,
                forgotten_hashes={hash_record_id(str(r)) for r in forgotten},
                hash_record_id=hash_record_id,
                expected_rows=expected_rows,
            )
        )

    def test_clean_shards_pass(self, runner: GateRunner) -> None:
        result = self.data_gate(
            runner, shards({0: [1, 2], 1: [3]}), forgotten=[9], expected_rows={0: 2, 1: 1}
        )
        assert result.gate == "data"
        assert result.passed
        assert len(result.outcomes) == 4 + 2 * 2

    def test_a_forgotten_record_fails(self, runner: GateRunner) -> None:
        result = self.data_gate(runner, shards({0: [1, 2], 1: [3]}), forgotten=[3])
        assert not result.passed
        assert failing(result) == [("expect_column_values_to_not_be_in_set", "record_id_hash")]
        assert result.failures()[0].observed == 1

    def test_an_id_in_two_shards_fails(self, runner: GateRunner) -> None:
        result = self.data_gate(runner, shards({0: [1, 2], 1: ["2"]}))
        assert failing(result) == [("expect_column_values_to_be_unique", "record_id")]

    def test_a_label_out_of_range_and_an_extra_column_fail(self, runner: GateRunner) -> None:
        tables = shards({0: [1, 2, 3], 1: [4]})
        tables[0]["label"] = [0, 1, 7]
        tables[1]["extra"] = 1.0
        result = self.data_gate(runner, tables)
        assert failing(result) == [
            ("expect_column_values_to_be_between", "label"),
            ("expect_table_columns_to_match_set", None),
        ]

    def test_a_wrong_row_count_fails(self, runner: GateRunner) -> None:
        result = self.data_gate(runner, shards({0: [1, 2]}), expected_rows={0: 3})
        assert failing(result) == [("expect_table_row_count_to_equal", None)]

    def test_without_a_champion_only_the_floor_is_checked(self, runner: GateRunner) -> None:
        correctness = HeldOutCorrectness(("1", "2", "3", "4"), (True, True, False, False))
        result = runner.run_metric_gate(correctness, GATES)
        assert result.gate == "metric"
        assert result.passed
        (floor,) = result.outcomes
        assert floor.observed == 0.5
        assert floor.description == "held-out accuracy 0.5000 is at least the floor 0.5000"

    def test_one_flipped_prediction_of_36_passes(self, runner: GateRunner) -> None:
        result = runner.run_metric_gate(paired(36, worse=1), GATES)
        assert result.passed
        assert "but not significantly" in result.outcomes[1].description

    def test_a_ten_point_drop_of_36_fails(self, runner: GateRunner) -> None:
        result = runner.run_metric_gate(paired(36, worse=4), GATES)
        assert not result.passed
        assert failing(result) == [("expect_column_mean_to_be_between", "accuracy_drop")]
        assert result.outcomes[1].observed == pytest.approx(4 / 36)
        assert result.outcomes[1].description.endswith("is significant at level 0.05")

    def fairness_gate(
        self, runner: GateRunner, candidate: Sequence[bool], training: Mapping[int, int]
    ) -> GateResult:
        labels = (0,) * 20 + (1,) * 20
        groups = ("a", "b") * 20
        correctness = HeldOutCorrectness(tuple(map(str, range(40))), tuple(candidate), (True,) * 40)
        evidence = FairnessEvidence(
            correctness, labels, groups, "sex", dict(training), expected_classes=(0, 1, 2)
        )
        return runner.run_fairness_gate(evidence, GATES)

    def test_a_fair_candidate_passes_the_fairness_gate(self, runner: GateRunner) -> None:
        result = self.fairness_gate(runner, [True] * 39 + [False], {0: 5, 1: 5, 2: 5})
        assert result.gate == "fairness"
        assert result.passed
        # Support, two classes, two groups, the sensitive column.
        assert len(result.outcomes) == 6

    def test_a_lost_class_fails_its_recall_and_the_support_check(self, runner: GateRunner) -> None:
        result = self.fairness_gate(runner, [True] * 20 + [False] * 20, {0: 5, 2: 5})
        # Groups of 20 are below the default minimum size (30): reported, not gated.
        assert failing(result) == [
            ("expect_column_distinct_values_to_contain_set", "class"),
            ("expect_column_mean_to_be_between", "drop"),
        ]
        assert result.failures()[1].observed["class"] == 1
        assert result.failures()[0].observed == [1]

    def test_below_the_floor_fails(self, runner: GateRunner) -> None:
        result = runner.run_metric_gate(paired(10, worse=6), GATES)
        assert failing(result) == [
            ("expect_column_mean_to_be_between", "correct"),
            ("expect_column_mean_to_be_between", "accuracy_drop"),
        ]


def test_a_gate_passes_when_every_outcome_succeeded() -> None:
    ok = ExpectationOutcome("expect_column_values_to_be_unique", "id", True, 0, "all unique")
    bad = ExpectationOutcome("expect_table_row_count_to_equal", None, False, 9, "9 rows")

    passed = GateResult.from_outcomes("data", iter([ok]))
    failed = GateResult.from_outcomes("data", [ok, bad])

    assert passed == GateResult("data", True, (ok,))
    assert failed == GateResult("data", False, (ok, bad))
    assert GateResult.from_outcomes("data", []).passed


def test_the_fake_fails_a_gate_on_purpose() -> None:
    fake = FakeGateRunner(failing={"metric"})

    data = fake.run_data_gate(
        DataGateEvidence(
            shards({0: [1]}),
            id_column="record_id",
            label_column="label",
            feature_columns=("f0",),
            num_classes=3,
            forgotten_hashes=set(),
            hash_record_id=hash_record_id,
        )
    )
    metric = fake.run_metric_gate(paired(36), GATES)

    assert data.passed
    assert not metric.passed
    assert metric.failures()[0].description == "the metric gate fails on purpose"
    assert fake.calls == ["data", "metric"]
    fairness = FakeGateRunner(failing={"fairness"}).run_fairness_gate(
        FairnessEvidence(paired(2), (0, 0), training_classes={0: 1}, expected_classes=(0,)),
        GATES,
    )
    assert [f.description for f in fairness.failures()] == ["the fairness gate fails on purpose"]

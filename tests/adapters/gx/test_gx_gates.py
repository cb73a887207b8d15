"""The great-expectations gates pass clean data and good models, and name every failure.

Real great-expectations on tiny frames: its import (seconds) is paid once, by the first test
that runs a gate; every later gate costs tens of milliseconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import pytest

from unlearn_ops.adapters.gx.gates import (
    ExpectationOutcome,
    GateResult,
    run_data_gate,
    run_metric_gate,
    summarise_failures,
)
from unlearn_ops.errors import StoreError
from unlearn_ops.params import GateParams
from unlearn_ops.serving.gates import DataGateEvidence, HeldOutCorrectness
from unlearn_ops.settings import Settings

FEATURES = ("f0", "f1")
NUM_CLASSES = 3
SHARD_IDS = {0: [0, 3, 6, 9], 1: [1, 4, 7, 10, 13], 2: [2, 5, 8]}
hash_record_id = Settings(id_hash_key="test-key").hash_record_id


def make_shards(ids_per_shard: Mapping[int, Sequence[object]]) -> dict[int, pd.DataFrame]:
    rng = np.random.default_rng(0)
    return {
        shard_id: pd.DataFrame(
            {
                "record_id": list(ids),
                "slice_id": [row % 2 for row in range(len(ids))],
                "label": [row % NUM_CLASSES for row in range(len(ids))],
                "f0": rng.normal(size=len(ids)),
                "f1": rng.normal(size=len(ids)),
            }
        )
        for shard_id, ids in ids_per_shard.items()
    }


def data_gate(
    shards: Mapping[int, pd.DataFrame],
    forgotten: Collection[object] = (),
    expected_rows: Mapping[int, int] | None = None,
) -> GateResult:
    return run_data_gate(
        DataGateEvidence(
            shards,
            id_column="record_id",
            label_column="label",
            feature_columns=FEATURES,
            num_classes=NUM_CLASSES,
            forgotten_hashes={hash_record_id(record_id) for record_id in forgotten},
            hash_record_id=hash_record_id,
            expected_rows=expected_rows,
        )
    )


def only_failure(result: GateResult) -> ExpectationOutcome:
    (failure,) = result.failures()
    return failure


# ----------------------------------------------------------------------------- data gate


def test_clean_shards_pass() -> None:
    shards = make_shards(SHARD_IDS)
    before = {shard_id: table.copy() for shard_id, table in shards.items()}

    result = data_gate(shards, forgotten=[11, 12], expected_rows={0: 4, 1: 5, 2: 3})

    assert result.passed
    assert result.gate == "data"
    assert result.failures() == []
    # Four checks over all records, then the columns and the row count of each shard.
    assert len(result.outcomes) == 4 + 2 * len(shards)
    forgotten = result.outcomes[0]
    assert forgotten.expectation == "expect_column_values_to_not_be_in_set"
    assert forgotten.column == "record_id_hash"
    assert forgotten.observed == 0
    assert forgotten.description == "no forgotten record remains in any of the 3 shards"
    assert "shard 1 has 5 rows, as expected" in [o.description for o in result.outcomes]
    # A shard with the expected columns records their count, not their names again.
    columns = [o for o in result.outcomes if o.expectation == "expect_table_columns_to_match_set"]
    assert [o.observed for o in columns] == [5] * len(shards)
    for shard_id, table in shards.items():
        pd.testing.assert_frame_equal(table, before[shard_id])


def test_without_expected_rows_no_row_count_is_checked() -> None:
    result = data_gate(make_shards(SHARD_IDS))

    assert result.passed
    assert "expect_table_row_count_to_equal" not in {o.expectation for o in result.outcomes}


def test_an_empty_shard_passes() -> None:
    shards = make_shards({0: [1, 2], 1: []})

    result = data_gate(shards, forgotten=[3], expected_rows={0: 2, 1: 0})

    assert result.passed, summarise_failures([result])


def test_a_forgotten_record_left_in_a_shard_fails_naming_the_shard_and_count() -> None:
    result = data_gate(make_shards(SHARD_IDS), forgotten=[4, 10, 11])

    assert not result.passed
    failure = only_failure(result)
    assert failure.expectation == "expect_column_values_to_not_be_in_set"
    assert failure.column == "record_id_hash"
    assert failure.observed == 2
    assert failure.description == "2 forgotten records remain in shard 1"


def test_forgotten_records_in_several_shards_are_counted_per_shard() -> None:
    result = data_gate(make_shards(SHARD_IDS), forgotten=[0, 3, 5])

    failure = only_failure(result)
    assert failure.observed == 3
    assert failure.description == "3 forgotten records remain: 2 in shard 0, 1 in shard 2"


def test_record_ids_are_compared_as_text() -> None:
    # A float id column holds 7.0 for the record "7", whose hash the ledger keeps.
    shards = make_shards({0: [6.0, 7.0], 1: ["8"]})

    failure = only_failure(data_gate(shards, forgotten=["7"]))

    assert failure.description == "1 forgotten record remains in shard 0"


@pytest.mark.parametrize(
    ("ids_per_shard", "description"),
    [
        ({0: [1, 2, 1], 1: [3]}, "2 rows share their record_id with another row in shard 0"),
        (
            {0: [1, 2], 1: [3], 2: ["2"]},
            "2 rows share their record_id with another row: 1 in shard 0, 1 in shard 2",
        ),
    ],
    ids=["within-a-shard", "across-shards"],
)
def test_duplicate_ids_fail(ids_per_shard: dict[int, list[object]], description: str) -> None:
    failure = only_failure(data_gate(make_shards(ids_per_shard)))

    assert failure.expectation == "expect_column_values_to_be_unique"
    assert failure.column == "record_id"
    assert failure.observed == 2
    assert failure.description == description


def test_a_missing_id_fails() -> None:
    shards = make_shards({0: ["a", "b"], 1: ["c", None]})

    failure = only_failure(data_gate(shards))

    assert failure.expectation == "expect_column_values_to_not_be_null"
    assert failure.description == "1 row has no record_id in shard 1"


@pytest.mark.parametrize(
    ("change", "description"),
    [
        (lambda table: table.drop(columns=["f1"]), "shard 1 lacks column 'f1'"),
        (lambda table: table.assign(extra=1), "shard 1 has unexpected column 'extra'"),
        (
            lambda table: table.rename(columns={"f1": "f2"}),
            "shard 1 lacks column 'f1' and has unexpected column 'f2'",
        ),
        (lambda table: table.drop(columns=["label"]), "shard 1 lacks column 'label'"),
    ],
    ids=["missing", "extra", "renamed", "no-label"],
)
def test_a_missing_or_extra_column_fails(change: object, description: str) -> None:
    shards = make_shards(SHARD_IDS)
    shards[1] = change(shards[1])  # type: ignore[operator]

    failure = only_failure(data_gate(shards))

    assert failure.expectation == "expect_table_columns_to_match_set"
    assert failure.column is None
    assert failure.description == description
    assert sorted(failure.observed) == sorted(change(make_shards(SHARD_IDS)[1]).columns)  # type: ignore[operator]


def test_shards_that_share_the_wrong_columns_each_fail_by_name() -> None:
    # The column check runs once per distinct column list: each shard still gets its own.
    shards = make_shards(SHARD_IDS)
    for shard_id in (0, 2):
        shards[shard_id] = shards[shard_id].assign(extra=1)

    result = data_gate(shards)

    assert [f.description for f in result.failures()] == [
        "shard 0 has unexpected column 'extra'",
        "shard 2 has unexpected column 'extra'",
    ]
    columns = [o for o in result.outcomes if o.expectation == "expect_table_columns_to_match_set"]
    assert [o.success for o in columns] == [False, True, False]
    assert columns[1].description == "shard 1 has exactly the expected columns"


def test_a_label_out_of_range_fails() -> None:
    shards = make_shards(SHARD_IDS)
    shards[2].loc[[0, 2], "label"] = [NUM_CLASSES, -1]

    failure = only_failure(data_gate(shards))

    assert failure.expectation == "expect_column_values_to_be_between"
    assert failure.column == "label"
    assert failure.observed == 2
    assert failure.description == "2 label values lie outside [0, 2] in shard 2"


def test_a_label_that_is_not_a_number_fails_without_raising() -> None:
    shards = make_shards(SHARD_IDS)
    shards[0]["label"] = ["cat", "dog", "cat", "dog"]

    failure = only_failure(data_gate(shards))

    assert failure.expectation == "expect_column_values_to_be_between"
    assert failure.observed is None
    assert failure.description.startswith(
        "column 'label' could not be checked in the shard tables: "
    )


def test_a_wrong_row_count_fails_naming_the_shard() -> None:
    result = data_gate(make_shards(SHARD_IDS), expected_rows={0: 4, 1: 5, 2: 4})

    failure = only_failure(result)
    assert failure.expectation == "expect_table_row_count_to_equal"
    assert failure.observed == 3
    assert failure.description == "shard 2 has 3 rows, expected 4"


def test_row_counts_for_other_shards_are_an_error() -> None:
    with pytest.raises(StoreError, match=r"expected row counts are for shards \[0, 1\]"):
        data_gate(make_shards(SHARD_IDS), expected_rows={0: 4, 1: 5})


def test_no_shard_table_is_an_error() -> None:
    with pytest.raises(StoreError, match="no shard table was given"):
        data_gate({})


def test_an_error_inside_great_expectations_becomes_a_store_error() -> None:
    with pytest.raises(StoreError, match="great-expectations failed") as caught:
        run_data_gate(
            DataGateEvidence(
                make_shards(SHARD_IDS),
                id_column="",  # great-expectations refuses an empty column name
                label_column="label",
                feature_columns=FEATURES,
                num_classes=NUM_CLASSES,
                forgotten_hashes=set(),
                hash_record_id=hash_record_id,
            )
        )
    assert type(caught.value.__cause__).__module__.startswith(("great_expectations", "pydantic"))


# --------------------------------------------------------------------------- metric gate

GATES = GateParams(min_accuracy=0.8, max_accuracy_drop=0.02)


def held_out(
    records: int, *, champion_errors: int = 0, worse: int = 0, better: int = 0
) -> HeldOutCorrectness:
    """The champion misses its first `champion_errors` records; the candidate differs from
    it on `worse` records it gets right (its last ones) and `better` it gets wrong."""
    assert better <= champion_errors <= records - worse
    champion = [index >= champion_errors for index in range(records)]
    candidate = [
        True if index < better else (False if index >= records - worse else right)
        for index, right in enumerate(champion)
    ]
    return HeldOutCorrectness(
        record_ids=tuple(str(index) for index in range(records)),
        candidate=tuple(candidate),
        champion=tuple(champion),
    )


def without_champion(records: int, right: int) -> HeldOutCorrectness:
    return HeldOutCorrectness(
        record_ids=tuple(str(index) for index in range(records)),
        candidate=tuple(index < right for index in range(records)),
    )


@pytest.mark.parametrize(
    ("right", "passed", "description"),
    [
        (9, True, "held-out accuracy 0.9000 is at least the floor 0.8000"),
        (8, True, "held-out accuracy 0.8000 is at least the floor 0.8000"),
        (
            7,
            False,
            "held-out accuracy 0.7000 is below the floor 0.8000 (gates.min_accuracy in "
            "params.yaml)",
        ),
    ],
)
def test_metric_gate_checks_the_floor(right: int, passed: bool, description: str) -> None:
    result = run_metric_gate(without_champion(10, right), GATES)

    # No champion: the floor is the only check, on the mean of the per-record column.
    (outcome,) = result.outcomes
    assert result.gate == "metric"
    assert result.passed is passed
    assert outcome.expectation == "expect_column_mean_to_be_between"
    assert outcome.column == "correct"
    assert outcome.observed == right / 10
    assert outcome.description == description


def test_one_flipped_prediction_of_36_held_out_records_passes() -> None:
    # Issue 11, finding 4: one changed record of 36 moves accuracy by 0.0278, more than
    # the limit 0.02; that is chance, not a worse model.
    result = run_metric_gate(held_out(36, champion_errors=2, worse=1), GATES)

    floor, drop = result.outcomes
    assert result.passed
    assert floor.success
    assert drop.expectation == "expect_column_mean_to_be_between"
    assert drop.column == "accuracy_drop"
    assert drop.observed == pytest.approx(1 / 36)
    assert drop.description == (
        "accuracy drop 0.0278 against the champion on the same 36 held-out records "
        "(1 worse, 0 better; 90% interval -0.0222 to 0.0278, mid-p 0.25) exceeds the limit "
        "0.0200 but not significantly: chance alone explains drops up to 0.0278 here "
        "(level 0.05)"
    )


def test_a_real_ten_point_drop_on_36_held_out_records_fails() -> None:
    # Four records the champion got right and the candidate gets wrong, none the other
    # way: 11.1 points, mid-p 0.5 ** 5 = 0.031.
    result = run_metric_gate(held_out(36, worse=4), GATES.model_copy(update={"min_accuracy": 0.5}))

    floor, drop = result.outcomes
    assert floor.success
    assert not result.passed
    assert result.failures() == [drop]
    assert drop.observed == pytest.approx(4 / 36)
    assert drop.description == (
        "accuracy drop 0.1111 against the champion on the same 36 held-out records "
        "(4 worse, 0 better; 90% interval 0.0139 to 0.1111, mid-p 0.0312) exceeds the limit "
        "0.0200 and is significant at level 0.05"
    )


def test_a_drop_with_as_many_changes_both_ways_is_chance() -> None:
    # Six worse and two better: the same 11-point drop, but the versions disagree on
    # eight records, and 6 of 8 against the candidate happens by chance (mid-p 0.09).
    result = run_metric_gate(held_out(36, champion_errors=2, worse=6, better=2), GATES)

    assert result.outcomes[1].observed == pytest.approx(4 / 36)
    assert result.outcomes[1].success
    assert "not significantly" in result.outcomes[1].description


@pytest.mark.parametrize(
    ("worse", "better", "passed", "verdict"),
    [
        (20, 0, True, "is within the limit 0.0200"),
        (30, 0, False, "exceeds the limit 0.0200 and is significant at level 0.05"),
        (12, 32, True, "is within the limit 0.0200"),
    ],
    ids=["drop-at-the-limit", "large-drop", "improvement"],
)
def test_on_a_large_held_out_set_the_limit_is_the_rule(
    worse: int, better: int, passed: bool, verdict: str
) -> None:
    result = run_metric_gate(held_out(1000, champion_errors=40, worse=worse, better=better), GATES)

    drop = result.outcomes[1]
    assert result.passed is passed
    assert drop.observed == pytest.approx((worse - better) / 1000)
    assert drop.description.endswith(verdict)


def test_metric_gate_fails_on_both_floor_and_drop() -> None:
    result = run_metric_gate(held_out(40, worse=20), GATES)

    assert [failure.column for failure in result.failures()] == ["correct", "accuracy_drop"]


def test_metric_gate_refuses_an_empty_held_out_set() -> None:
    with pytest.raises(StoreError, match="the held-out set has no record"):
        run_metric_gate(HeldOutCorrectness((), (), ()), GATES)


# -------------------------------------------------------------------------------- reports


def test_to_dict_is_json_serialisable() -> None:
    shards = make_shards(SHARD_IDS)
    shards[0] = shards[0].assign(extra=1.5)
    results = [
        data_gate(shards, forgotten=[4], expected_rows={0: 4, 1: 5, 2: 9}),
        run_metric_gate(held_out(100, worse=20), GATES),
    ]

    for result in results:
        data = json.loads(json.dumps(result.to_dict()))
        assert data["gate"] == result.gate
        assert data["passed"] is False
        assert len(data["outcomes"]) == len(result.outcomes)
        assert set(data["outcomes"][0]) == {
            "expectation",
            "column",
            "success",
            "observed",
            "description",
        }


def test_summarise_failures_is_one_line_naming_each_failure() -> None:
    shards = make_shards(SHARD_IDS)
    shards[0]["label"] = ["cat", "dog", "cat", "dog"]
    data = data_gate(shards, forgotten=[4, 7])
    metric = run_metric_gate(held_out(100, worse=20), GATES)

    summary = summarise_failures([data, metric])

    assert "\n" not in summary
    assert summary.startswith(
        "gate 'data' failed: expect_column_values_to_not_be_in_set on record_id_hash "
        "(2 forgotten records remain in shard 1); expect_column_values_to_be_between on label "
    )
    assert summary.endswith(
        "; gate 'metric' failed: expect_column_mean_to_be_between on accuracy_drop "
        "(accuracy drop 0.2000 against the champion on the same 100 held-out records "
        "(20 worse, 0 better; 90% interval 0.1565 to 0.2000, mid-p 4.77e-07) exceeds the "
        "limit 0.0200 and is significant at level 0.05)"
    )


def test_summarise_failures_counts_what_it_does_not_spell_out() -> None:
    shards = make_shards({shard_id: [shard_id] for shard_id in range(8)})

    result = data_gate(shards, expected_rows={shard_id: 2 for shard_id in range(8)})

    assert len(result.failures()) == 8
    assert summarise_failures([result]).endswith("(shard 4 has 1 row, expected 2); and 3 more")


def test_summarise_failures_without_failures() -> None:
    assert summarise_failures([run_metric_gate(without_champion(10, 9), GATES)]) == (
        "no gate failed"
    )


def test_importing_the_adapter_does_not_import_great_expectations() -> None:
    code = "import sys, unlearn_ops.adapters.gx.gates; print('great_expectations' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "False"

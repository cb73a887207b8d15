"""Planning a forget on hand-made slice counts: shards, first stages, costs and fractions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearn_ops.sisa.planning import RetrainingPlan, ShardPlan, plan_retraining, schedule_cost


@pytest.mark.parametrize(
    ("counts", "first_stage", "expected"),
    [
        ([10, 20, 30], 0, 10 + 30 + 60),
        ([10, 20, 30], 1, 30 + 60),
        ([10, 20, 30], 2, 60),
        ([10, 20, 30], 3, 0),
        ([5], 0, 5),
        ([0, 0, 7], 0, 7),
        ([], 0, 0),
    ],
)
def test_schedule_cost_by_hand(counts: list[int], first_stage: int, expected: int) -> None:
    assert schedule_cost(counts, first_stage) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 1000), max_size=12), st.data())
def test_schedule_cost_counts_each_slice_once_per_later_stage(
    counts: list[int], data: st.DataObject
) -> None:
    stages = len(counts)
    first = data.draw(st.integers(0, stages))
    # Slice i is seen by stages max(i, first)..R-1.
    expected = sum(count * (stages - max(i, first)) for i, count in enumerate(counts))
    assert schedule_cost(counts, first) == expected


SLICE_COUNTS = {0: [10, 20, 30], 1: [5, 5, 5], 2: [4, 4, 4]}


def test_plan_for_one_shard_by_hand() -> None:
    plan = plan_retraining(SLICE_COUNTS, {0: [2, 1]})
    # Shard 0 keeps [10, 19, 29]; it retrains stages 1 and 2: (10 + 19) + (10 + 19 + 29).
    assert plan.shards == (
        ShardPlan(shard_id=0, num_records=2, first_stage=1, stages=3, cost=87, full_cost=97),
    )
    assert plan.shards[0].stages_to_train == 2
    assert plan.shard_ids == [0]
    assert plan.cost == 87
    # From scratch on what remains: 97 + (5 + 10 + 15) + (4 + 8 + 12).
    assert plan.ensemble_cost == 151
    assert plan.fraction == pytest.approx(87 / 151)
    assert plan.compute_bound == pytest.approx(151 / 87)


def test_under_dp_an_affected_shard_retrains_from_its_first_stage() -> None:
    plan = plan_retraining(SLICE_COUNTS, {0: [2, 1]}, from_first_stage=True)
    # Shard 0 keeps [10, 19, 29]; every stage retrains: the whole schedule, 97.
    assert plan.shards == (
        ShardPlan(shard_id=0, num_records=2, first_stage=0, stages=3, cost=97, full_cost=97),
    )


def test_plan_for_two_shards_by_hand() -> None:
    plan = plan_retraining(SLICE_COUNTS, {2: [0], 1: [2, 2]})
    assert plan.shard_ids == [1, 2]
    one, two = plan.shards
    # Shard 1 keeps [5, 5, 3] and retrains stage 2 only: 13.
    assert (one.first_stage, one.num_records, one.cost, one.full_cost) == (2, 2, 13, 28)
    # Shard 2 keeps [3, 4, 4] and retrains all stages: 3 + 7 + 11.
    assert (two.first_stage, two.num_records, two.cost, two.full_cost) == (0, 1, 21, 21)
    assert plan.ensemble_cost == 100 + 28 + 21
    assert plan.cost == 34
    assert plan.fraction == pytest.approx(34 / 149)
    assert plan.compute_bound == pytest.approx(149 / 34)


def test_nothing_to_retrain() -> None:
    plan = plan_retraining(SLICE_COUNTS, {1: []}, holdout_records=3, already_forgotten=["7", "8"])
    assert plan.shards == ()
    assert plan.cost == 0
    assert plan.fraction == 0.0
    assert math.isinf(plan.compute_bound)
    assert plan.ensemble_cost == 100 + 30 + 24
    assert plan.holdout_records == 3
    assert plan.already_forgotten == ("7", "8")


def test_plan_does_not_change_the_counts_it_is_given() -> None:
    counts = {0: [3, 3]}
    plan_retraining(counts, {0: [0, 1]})
    assert counts == {0: [3, 3]}


def test_plan_to_dict() -> None:
    plan = plan_retraining(SLICE_COUNTS, {0: [1]}, holdout_records=1, already_forgotten=["x"])
    assert plan.to_dict() == {
        "shards": [
            {"shard_id": 0, "records": 1, "first_stage": 1, "stages_to_train": 2, "cost": 88},
        ],
        "cost": 88,  # shard 0 keeps [10, 19, 30]: (10 + 19) + (10 + 19 + 30)
        "ensemble_cost": 98 + 30 + 24,
        "fraction": 88 / 152,
        "holdout_records": 1,
        "already_forgotten": 1,
    }


def test_an_empty_plan_of_an_empty_ensemble() -> None:
    plan = RetrainingPlan(shards=(), ensemble_cost=0)
    assert plan.fraction == 0.0
    assert plan.shard_ids == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(1, 20), min_size=3, max_size=3), min_size=1, max_size=5),
    st.data(),
)
def test_a_plan_never_costs_more_than_a_full_retrain(
    counts: list[list[int]], data: st.DataObject
) -> None:
    slice_counts = dict(enumerate(counts))
    forgotten: dict[int, list[int]] = {}
    for shard_id, shard_counts in slice_counts.items():
        # At most one record from each slice, so no slice goes negative.
        chosen = data.draw(st.lists(st.integers(0, 2), max_size=3, unique=True))
        if chosen:
            forgotten[shard_id] = chosen
        assert all(shard_counts[s] >= 1 for s in chosen)
    plan = plan_retraining(slice_counts, forgotten)
    assert plan.shard_ids == sorted(forgotten)
    assert 0 <= plan.cost <= plan.ensemble_cost
    assert 0.0 <= plan.fraction <= 1.0
    for shard in plan.shards:
        assert shard.first_stage == min(forgotten[shard.shard_id])
        assert shard.cost <= shard.full_cost
        # Slice 0 keeps a record unless it is forgotten from, so skipping stage 0 saves.
        assert (shard.cost == shard.full_cost) == (shard.first_stage == 0)

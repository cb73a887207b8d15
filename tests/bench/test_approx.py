"""The approximate-unlearning benchmark: its protocol runs end to end on tiny settings."""

from __future__ import annotations

import json

import pytest

from unlearn_ops.bench.approx import (
    METHODS,
    ORACLE,
    SISA_ROW,
    approx_markdown,
    run_approx_benchmark,
)
from unlearn_ops.bench.approx_sisa import stage_steps
from unlearn_ops.params import Params

TINY = {
    "sisa": {"shards": 2, "slices": 1},
    "model": {"name": "mlp", "hidden_sizes": [16]},
    "training": {"epochs_per_stage": 20, "batch_size": 64},
}


@pytest.mark.slow
def test_every_method_is_scored_against_the_oracle() -> None:
    results = run_approx_benchmark([("tiny", "digits", TINY)], seeds=3, quick=True)
    json.dumps(results)  # results.json must hold it
    workload = results["workloads"][0]
    assert set(workload["tuned"]) == set(METHODS)
    result = workload["forget_sets"]["random 10%"]
    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == {ORACLE, SISA_ROW, *METHODS}
    oracle = rows[ORACLE]
    assert oracle["gap"] == (0.0, 0.0)
    assert oracle["steps_share"] == 1.0
    assert rows["ssd"]["steps"] == (0.0, 0.0)
    assert 0.0 < rows["finetune"]["steps_share"] < 1.0
    for row in rows.values():
        assert len(row["verdicts"]) == 3
        assert 0.0 <= row["audit_auc"][0] <= 1.0
    for method in METHODS:
        assert 0.0 <= rows[method]["F"] <= 1.0
    assert workload["checks"]["best"] in METHODS
    sisa = rows[SISA_ROW]
    assert sisa["certified"] == 3  # every seed's forget retrained bit for bit
    assert sisa["F"] is None
    assert "final" not in sisa
    assert sisa["steps_share"] > 0.0
    assert len(sisa["verdicts"]) == 3
    table = "\n".join(approx_markdown(results))
    assert "### tiny: random 10%" in table
    assert f"| {SISA_ROW} |" in table
    assert "certified bit for bit on 3 of 3 seeds" in table
    assert "Checks (tiny, random 10%)" in table


@pytest.mark.slow
def test_the_f_study_scores_fine_tuning_the_best_method_and_salun_at_its_own_n() -> None:
    results = run_approx_benchmark([("tiny", "digits", TINY)], seeds=3, quick=True, f_study=4)
    workload = results["workloads"][0]
    study, checks = workload["f_study"], workload["checks"]
    rows = {row["method"]: row for row in study["rows"]}
    assert set(rows) == {ORACLE, "finetune", checks["best"], "salun"}
    assert all(len(row["verdicts"]) == 4 for row in rows.values())
    assert study["forgotten"] == workload["forget_sets"]["random 10%"]["forgotten"]
    assert checks["F_n"] == 4
    assert (checks["F_finetune"], checks["F_salun"]) == (rows["finetune"]["F"], rows["salun"]["F"])
    assert checks["F_ceiling"] == rows[ORACLE]["F"]
    difference, low, high = checks["F_margin"]
    assert difference == pytest.approx(rows[checks["best"]]["F"] - rows["finetune"]["F"])
    assert low <= difference <= high
    assert checks["F_ok"] == (checks["best"] != "finetune" and low > 0)
    assert len(rows["finetune"]["F_records"]) == study["forgotten"]
    assert "F study at N = 4" in "\n".join(approx_markdown(results))


def test_fewer_than_three_seeds_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        run_approx_benchmark([("tiny", "digits", TINY)], seeds=2)


def test_stage_steps_count_the_batches_of_each_stage_from_the_first_retrained() -> None:
    params = Params.from_mapping(
        {"sisa": {"shards": 1, "slices": 2}, "training": {"epochs_per_stage": 3, "batch_size": 2}}
    )
    slices = [0, 0, 0, 1, 1]
    # stage 0: 3 records -> 2 batches; stage 1: 5 records -> 3 batches; 3 epochs each
    assert stage_steps(slices, 0, params) == 3 * 2 + 3 * 3
    assert stage_steps(slices, 1, params) == 3 * 3
    assert stage_steps(slices, 2, params) == 0

"""The end-to-end flow benchmark runs on tiny settings and its figures add up."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from unlearn_ops.bench.flows import flow_markdown, run_flow_benchmark
from unlearn_ops.bench.workloads import QUICK
from unlearn_ops.cli.bench import bench_flows


@pytest.mark.slow
def test_flow_benchmark_measures_forgets_against_a_full_retrain(tmp_path: Path) -> None:
    # The tiny model's per-class recall swings with one record: the fairness gate could
    # refuse a forget command, and this test is about the harness, not the gate.
    params = {**QUICK.params, "gates": {**QUICK.params["gates"], "fairness": {"enabled": False}}}
    run = run_flow_benchmark(
        "quick", "digits", params, tmp_path, seed=3, repeats=2, flows=bench_flows()
    )

    assert len(run["forget_warm_draws"]) == 2
    for draw in run["forget_warm_draws"]:
        # One record lives in one shard: exactly one shard retrains, from its slice.
        assert len(draw["retrained"]) == 1
        assert draw["bound"] >= 1.0
        assert draw["overhead"] == pytest.approx(draw["total"] - draw["retraining"])
    for key in ("first_train_flow", "full_retrain_flow", "forget_warm", "forget_cold_cli"):
        figures = run[key]
        phases = sum(
            figures[p]
            for p in ("data", "retraining", "evaluation", "gates", "lineage", "registration")
        )
        assert math.isclose(phases + figures["orchestration"], figures["total"], rel_tol=1e-6) or (
            phases > figures["total"] and figures["orchestration"] == 0.0
        )
    # The full retrain really retrained every shard (checkpoints were cleared).
    assert run["full_retrain_flow"]["retraining"] > 0
    assert run["speedup_full_over_forget_warm"] == pytest.approx(
        run["full_retrain_flow"]["total"] / run["forget_warm"]["total"]
    )
    # Issue 15: bytes a forget adds (one shard's weights and metadata), and the commands.
    sizes = run["artifact_bytes"]
    assert len(sizes["forgets"]) == 2
    for row in sizes["forgets"]:
        assert row["retrained"] == 1
        assert 0 < row["added"] < sizes["full_version"]
    commands = run["commands"]
    assert len(commands["forgets"]) == 3
    assert len(commands["forgets_own_process"]) == 3  # side by side: without the warm runner
    assert commands["train_over_forget"] == pytest.approx(
        commands["train"] / commands["forget_mean"]
    )
    lines = "\n".join(flow_markdown([run]))
    assert "| quick | forget 1 (cold CLI process) |" in lines
    assert "| quick | 2 x 2 | " in lines

"""The benchmark harness runs end to end on tiny settings and reports consistent figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearn_ops.bench.core import WORKLOADS, run_benchmark
from unlearn_ops.errors import ConfigError


def test_quick_benchmark_writes_json_and_markdown(tmp_path: Path) -> None:
    table = run_benchmark(tmp_path, quick=True, repeats=2, flows=False)
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").read_text() == table
    (run,) = results["workloads"]
    assert set(run["forget"]) == {"1", "10"}
    for size, forget in run["forget"].items():
        assert len(forget["draws"]) == 2
        for draw in forget["draws"]:
            assert len(draw["records"]) == int(size)
            assert draw["seconds"] > 0
            # A forget never processes more examples than training everything.
            assert draw["bound_vs_full"] >= 1.0
    assert 0.0 <= run["accuracy"]["ensemble"] <= 1.0
    assert "| quick |" in table


def test_unknown_workload_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mnist-cnn"):
        run_benchmark(tmp_path, only=["nope"])


def test_heavy_workload_is_the_cnn() -> None:
    names = {w.name: w for w in WORKLOADS}
    assert names["mnist-cnn"].params["model"]["name"] == "cnn"


def test_shard_sweep_reports_accuracy_against_the_bound(tmp_path: Path) -> None:
    from unlearn_ops.bench.core import _shard_sweep
    from unlearn_ops.bench.workloads import QUICK

    rows = _shard_sweep("digits", QUICK.params, tmp_path, 0, (1, 2))
    assert [r["shards"] for r in rows] == [1, 2]
    # One monolithic model is the reference of every row; more shards, a larger bound.
    assert rows[0]["monolithic_accuracy"] == rows[1]["monolithic_accuracy"]
    assert rows[0]["expected_single_forget_bound"] < rows[1]["expected_single_forget_bound"]
    for row in rows:
        assert row["gap_points"] == pytest.approx(
            100 * (row["monolithic_accuracy"] - row["accuracy"])
        )

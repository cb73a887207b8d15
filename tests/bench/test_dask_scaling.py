"""The Dask scaling benchmark at tiny size: both cluster sizes run, with identical hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearn_ops.bench.dask_scaling import dask_markdown, run_dask_scaling
from unlearn_ops.bench.workloads import Workload

pytestmark = pytest.mark.servers  # starts LocalClusters of worker processes


def test_one_and_two_workers_train_the_same_shards(tmp_path: Path) -> None:
    params = {
        "sisa": {"slices": 2},
        "model": {"name": "mlp", "hidden_sizes": [8]},
        "training": {"epochs_per_stage": 1},
    }
    result = run_dask_scaling(
        Workload("tiny", "digits", params, "digits, tiny"), tmp_path, shards=2
    )
    assert [r["workers"] for r in result["runs"]] == [1, 2]
    assert [r["worker_processes"] for r in result["runs"]] == [1, 2]
    assert result["identical_hashes"] is True
    assert len(result["runs"][0]["hashes"]) == 2
    assert len(set(result["runs"][0]["hashes"])) == 2  # two shards, two models
    assert result["runs"][0]["speedup"] == 1.0
    table = "\n".join(dask_markdown(result))
    assert "Identical weights hashes: yes." in table
    assert "| 2 |" in table

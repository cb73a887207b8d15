"""The million-record workload: its generated file, and its benchmark on 20,000 records."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from unlearn_ops.bench.million import FORGET_SIZES, million_markdown, run_million_benchmark
from unlearn_ops.bench.million import write_million as write


def test_the_generated_file_is_seeded_and_shaped(tmp_path: Path) -> None:
    first = write(tmp_path / "a.parquet", 2_500, seed=1)
    again = write(tmp_path / "b.parquet", 2_500, seed=1)
    other = write(tmp_path / "c.parquet", 2_500, seed=2)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, again, other)]
    assert digest[0] == digest[1] != digest[2]
    frame = pd.read_parquet(first)
    assert list(frame.columns) == ["record_id", "label", *[f"x{i}" for i in range(32)]]
    assert frame["record_id"].tolist() == list(range(2_500))
    assert set(frame["label"]) == {0, 1}
    assert (frame.dtypes.iloc[2:] == "float32").all()


def test_a_large_file_is_written_in_chunks(tmp_path: Path) -> None:
    path = write(tmp_path / "m.parquet", 250_000)
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_rows == 250_000
    assert metadata.num_row_groups == 3  # one per chunk of 100,000 rows


@pytest.mark.slow
def test_the_benchmark_on_20000_records(tmp_path: Path) -> None:
    results = run_million_benchmark(tmp_path, 20_000)
    assert (
        results["prepare"]["records"]
        + len(pd.read_parquet(tmp_path / "million-20000" / "data" / "holdout.parquet"))
        == 20_000
    )
    assert results["train"]["shards"] == 8
    assert results["plan"]["index_entries_rebuilt"] == []
    # Every id planned is a training record: only the shards' entries are built.
    rebuilt = sorted(results["plan_without_index"]["index_entries_rebuilt"])
    assert rebuilt == [f"shard-{s:03d}.parquet" for s in range(8)]
    one, thousand, rest = results["forgets"]
    assert one["data_files_written"] == 1
    assert one["forgotten"] == 1
    assert len(one["retrained"]) == 1
    assert thousand["forgotten"] == FORGET_SIZES[1]
    assert rest["forgotten"] > 0
    assert results["verify"]["exact"]
    for step in (results["train"], *results["forgets"]):
        assert step["peak_rss"] >= step["baseline_rss"]
    assert "Data files written by a one-record forget: 1" in million_markdown(results)

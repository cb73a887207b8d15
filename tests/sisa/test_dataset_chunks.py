"""Reading a dataset in chunks: the same records as whole, each chunk checked like a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import synthetic_frame
from unlearn_ops.errors import DatasetError
from unlearn_ops.sisa.dataset_chunks import load_dataset_chunks
from unlearn_ops.sisa.datasets import load_dataset


def test_parquet_chunks_hold_the_whole_table_in_order(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    synthetic_frame(250).to_parquet(path, index=False)
    chunks = list(load_dataset_chunks(path, chunk_rows=100))
    assert [len(c) for c in chunks] == [100, 100, 50]
    whole = load_dataset(path)
    joined = pd.concat([c.frame for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.frame)
    assert {c.feature_columns for c in chunks} == {whole.feature_columns}


def test_only_the_named_columns_are_read(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    frame = synthetic_frame(30)
    frame["note"] = "text, not a feature"
    frame.to_parquet(path, index=False)
    (chunk,) = load_dataset_chunks(path, feature_columns=["f0", "f2"])
    assert list(chunk.frame.columns) == ["record_id", "label", "f0", "f2"]


def test_a_bad_row_in_a_later_chunk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    frame = synthetic_frame(120)
    frame["f1"] = frame["f1"].astype(np.float64)
    frame.loc[110, "f1"] = np.inf
    frame.to_parquet(path, index=False)
    chunks = load_dataset_chunks(path, chunk_rows=50)
    assert len(next(chunks)) == 50
    with pytest.raises(DatasetError, match="missing or infinite"):
        list(chunks)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "the table has no rows"), (b"not parquet", "cannot be read")],
    ids=["empty", "garbage"],
)
def test_files_without_records_are_refused(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "data.parquet"
    if content is None:
        synthetic_frame(5).iloc[:0].to_parquet(path, index=False)
    else:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        list(load_dataset_chunks(path))


def test_a_folder_or_a_missing_file_is_named_for_what_it_is(tmp_path: Path) -> None:
    (tmp_path / "parts.parquet").mkdir()  # a Spark-style folder of parts
    with pytest.raises(DatasetError, match=r"parts\.parquet: is a folder\. name the \.csv"):
        list(load_dataset_chunks(tmp_path / "parts.parquet"))
    with pytest.raises(DatasetError, match=r"absent\.parquet: file not found"):
        list(load_dataset_chunks(tmp_path / "absent.parquet"))


def test_csv_and_built_in_datasets_come_whole(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    synthetic_frame(40).to_csv(path, index=False)
    (chunk,) = load_dataset_chunks(path, chunk_rows=10)
    pd.testing.assert_frame_equal(chunk.frame, load_dataset(path).frame)
    (digits,) = load_dataset_chunks("digits", chunk_rows=10)
    assert len(digits) == 1_797

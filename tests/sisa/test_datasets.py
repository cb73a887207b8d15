"""Validated tables, CSV/parquet reading, the built-in datasets and the holdout split."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearn_ops.errors import DatasetError, UnknownDatasetError, UnlearnOpsError
from unlearn_ops.sisa.datasets import (
    BUILTIN_DATASETS,
    Dataset,
    load_dataset,
    load_digits,
    load_mnist_5k,
    read_table,
    split_holdout,
)


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_id": [10, 11, 12, 13],
            "label": [0, 1, 2, 1],
            "a": [0.5, 1.5, 2.5, 3.5],
            "b": [1, 2, 3, 4],
        }
    )


def user_frame() -> pd.DataFrame:
    """A table as a user has it: own column names, an extra text column, string ids."""
    return pd.DataFrame(
        {
            "patient": ["p-1", "p-2", "p-3", "p-4", "p-5"],
            "notes": ["x", "y", "z", "w", "v"],
            "outcome": [1, 0, 1, 1, 0],
            "age": [31.0, 45.0, 27.0, 60.0, 52.0],
            "weight": [70.0, 82.5, 64.0, 90.0, 77.0],
        }
    )


# ------------------------------------------------------------------------ valid tables
def test_from_frame_keeps_id_label_and_features() -> None:
    frame = small_frame()
    frame["note"] = "extra"
    dataset = Dataset.from_frame(frame, feature_columns=["a", "b"], source="t")
    assert list(dataset.frame.columns) == ["record_id", "label", "a", "b"]
    assert dataset.feature_columns == ("a", "b")
    assert dataset.num_classes == 3
    assert len(dataset) == 4
    assert dataset.features().dtype == np.float32
    assert dataset.features().shape == (4, 2)
    np.testing.assert_array_equal(dataset.labels(), [0, 1, 2, 1])
    assert dataset.labels().dtype == np.int64
    assert dataset.record_ids.tolist() == [10, 11, 12, 13]


def test_from_frame_takes_every_other_column_as_a_feature() -> None:
    dataset = Dataset.from_frame(small_frame())
    assert dataset.feature_columns == ("a", "b")


def test_from_frame_accepts_integral_float_labels_and_a_given_class_count() -> None:
    frame = small_frame().assign(label=[0.0, 1.0, 2.0, 1.0])
    dataset = Dataset.from_frame(frame, num_classes=5)
    assert dataset.num_classes == 5
    assert dataset.labels().dtype == np.int64


def test_from_frame_ignores_the_index_of_the_given_frame() -> None:
    frame = small_frame().set_axis([7, 3, 9, 1])
    dataset = Dataset.from_frame(frame)
    np.testing.assert_array_equal(dataset.features()[:, 0], [0.5, 1.5, 2.5, 3.5])


def test_subset_keeps_columns_and_class_count() -> None:
    dataset = Dataset.from_frame(small_frame())
    subset = dataset.subset(dataset.labels() == 1)
    assert subset.record_ids.tolist() == [11, 13]
    assert subset.num_classes == 3
    assert subset.feature_columns == dataset.feature_columns
    assert subset.frame.index.tolist() == [0, 1]


# -------------------------------------------------------------------------- bad tables
@pytest.mark.parametrize(
    ("edit", "kwargs", "message"),
    [
        (lambda f: f.drop(columns="record_id"), {}, r"missing column\(s\) 'record_id'"),
        (lambda f: f.drop(columns="label"), {}, r"missing column\(s\) 'label'"),
        (lambda f: f, {"id_column": "patient"}, r"missing column\(s\) 'patient'"),
        (lambda f: f, {"feature_columns": ["a", "c"]}, r"missing feature column\(s\) 'c'"),
        (lambda f: f[["record_id", "label"]], {}, "no feature columns"),
        (lambda f: f.iloc[:0], {}, "no rows"),
        (lambda f: f.assign(record_id=[1, 2, 2, 3]), {}, r"1 duplicated id\(s\).*: 2"),
        (lambda f: f.assign(record_id=[1.0, np.nan, 2.0, 3.0]), {}, "1 row.* no 'record_id'"),
        (lambda f: f.assign(b=["1", "2", "3", "x"]), {}, "'b' are not numeric"),
        (lambda f: f.assign(a=[0.5, np.nan, 1.0, 2.0]), {}, "missing or infinite"),
        (lambda f: f.assign(a=[0.5, np.inf, 1.0, 2.0]), {}, "missing or infinite"),
        (lambda f: f.assign(label=[0, -1, 1, 1]), {}, "non-negative integers"),
        (lambda f: f.assign(label=[0.0, 0.5, 1.0, 1.0]), {}, "non-negative integers"),
        (lambda f: f.assign(label=["a", "b", "a", "b"]), {}, "non-negative integers"),
        (lambda f: f.assign(label=[True, False, True, True]), {}, "non-negative integers"),
        (lambda f: f, {"num_classes": 2}, r"label 2 is outside 0\.\.1"),
    ],
    ids=[
        "no-id-column",
        "no-label-column",
        "user-id-column-absent",
        "feature-column-absent",
        "no-features",
        "empty",
        "duplicate-ids",
        "missing-id",
        "text-feature",
        "missing-feature",
        "infinite-feature",
        "negative-label",
        "fractional-label",
        "text-label",
        "boolean-label",
        "label-out-of-range",
    ],
)
def test_bad_tables_raise_dataset_error_naming_the_problem(
    edit: Callable[[pd.DataFrame], pd.DataFrame], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(DatasetError, match=message) as caught:
        Dataset.from_frame(edit(small_frame()), source="bad.csv", **kwargs)
    assert str(caught.value).startswith("dataset bad.csv: ")
    assert isinstance(caught.value, UnlearnOpsError)
    assert isinstance(caught.value, ValueError)


def test_missing_labels_are_named_as_missing() -> None:
    frame = small_frame().assign(label=[0.0, np.nan, 1.0, 1.0])
    with pytest.raises(DatasetError, match=r"missing|no 'label'"):
        Dataset.from_frame(frame)


def test_ids_equal_as_text_are_duplicates() -> None:
    # Ids compare as text everywhere else (7 and "7" are one record), so also here.
    frame = small_frame().astype({"record_id": object})
    frame.loc[1, "record_id"] = "10"
    with pytest.raises(DatasetError, match="duplicated"):
        Dataset.from_frame(frame)


@pytest.mark.parametrize("column", ["record_id", "label"])
def test_feature_columns_cannot_include_the_id_or_the_label(column: str) -> None:
    with pytest.raises(DatasetError, match=column):
        Dataset.from_frame(small_frame(), feature_columns=["a", column])


# ---------------------------------------------------------------------- reading files
def test_csv_with_user_column_names_loads(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    user_frame().to_csv(path, index=False)
    dataset = load_dataset(
        path, id_column="patient", label_column="outcome", feature_columns=["age", "weight"]
    )
    assert dataset.id_column == "patient"
    assert dataset.record_ids.tolist() == ["p-1", "p-2", "p-3", "p-4", "p-5"]
    np.testing.assert_array_equal(dataset.labels(), [1, 0, 1, 1, 0])
    assert dataset.features()[3].tolist() == [60.0, 90.0]
    assert dataset.num_classes == 2
    assert dataset.source == str(path)


def test_parquet_with_user_column_names_loads_relative_to_base_dir(tmp_path: Path) -> None:
    user_frame().to_parquet(tmp_path / "patients.parquet", index=False)
    dataset = load_dataset(
        "patients.parquet",
        id_column="patient",
        label_column="outcome",
        feature_columns=["age", "weight"],
        base_dir=tmp_path,
    )
    assert len(dataset) == 5
    assert dataset.feature_columns == ("age", "weight")


def test_csv_with_a_text_feature_is_rejected_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    user_frame().to_csv(path, index=False)
    with pytest.raises(DatasetError, match="'notes' are not numeric"):
        load_dataset(path, id_column="patient", label_column="outcome")


def test_csv_with_a_blank_cell_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("record_id,label,a\n1,0,0.5\n2,1,\n3,1,2.0\n")
    with pytest.raises(DatasetError, match="missing or infinite"):
        load_dataset(path)


def test_csv_with_only_a_header_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("record_id,label,a\n")
    with pytest.raises(DatasetError, match="no rows"):
        load_dataset(path)


def test_read_table_reads_csv_and_parquet_alike(tmp_path: Path) -> None:
    small_frame().to_csv(tmp_path / "t.csv", index=False)
    small_frame().to_parquet(tmp_path / "t.pq", index=False)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.csv"), read_table(tmp_path / "t.pq"))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.csv", None, "file not found"),
        ("t.json", b"{}", "unsupported file type '.json'"),
        ("t.parquet", b"not parquet at all", "cannot be read"),
        ("t.csv", b"", "cannot be read"),
        ("tables.parquet/", None, "tables.parquet: is a folder. name the .csv or .parquet file"),
    ],
)
def test_read_table_errors(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if name.endswith("/"):
        path.mkdir()
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        read_table(path)


def test_unknown_dataset_name_lists_the_built_in_ones() -> None:
    with pytest.raises(UnknownDatasetError, match="digits, mnist-5k") as caught:
        load_dataset("cifar")
    assert isinstance(caught.value, KeyError)
    assert sorted(BUILTIN_DATASETS) == ["digits", "mnist-5k"]


def test_missing_csv_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file not found"):
        load_dataset(tmp_path / "absent.csv")


# ------------------------------------------------------------------- built-in datasets
def test_digits_loads() -> None:
    dataset = load_dataset("digits")
    assert dataset.features().shape == (1797, 64)
    assert dataset.num_classes == 10
    assert dataset.record_ids.tolist() == list(range(1797))
    assert dataset.features().min() == 0.0
    assert dataset.features().max() == 1.0
    assert sorted(set(dataset.labels().tolist())) == list(range(10))
    assert dataset.source == "digits"


def test_mnist_5k_loads() -> None:
    dataset = load_mnist_5k()
    assert dataset.features().shape == (5000, 784)
    assert dataset.num_classes == 10
    np.testing.assert_array_equal(np.bincount(dataset.labels()), [500] * 10)
    assert dataset.features().max() <= 1.0


# ----------------------------------------------------------------------- holdout split
def test_split_holdout_partitions_the_records() -> None:
    dataset = load_digits()
    train, holdout = split_holdout(dataset, 0.25, "salt")
    train_ids = set(train.record_ids.tolist())
    holdout_ids = set(holdout.record_ids.tolist())
    assert not train_ids & holdout_ids
    assert train_ids | holdout_ids == set(range(1797))
    assert 0.2 < len(holdout) / len(dataset) < 0.3
    assert holdout.num_classes == 10
    assert set(split_holdout(dataset, 0.25, "other")[1].record_ids.tolist()) != holdout_ids


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=60, unique=True),
    st.data(),
)
def test_a_records_split_never_depends_on_other_records(
    ids: list[int], data: st.DataObject
) -> None:
    keep = data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    frame = pd.DataFrame({"record_id": ids, "label": [0] * len(ids), "x": [1.0] * len(ids)})
    dataset = Dataset.from_frame(frame)
    held = set(split_holdout(dataset, 0.3, "s")[1].record_ids.tolist())
    remaining = dataset.subset(np.array(keep))
    if len(remaining) == 0:
        return
    held_after = set(split_holdout(remaining, 0.3, "s")[1].record_ids.tolist())
    assert held_after == held & set(remaining.record_ids.tolist())

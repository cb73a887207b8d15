"""Preparing a workspace's data: the dataset split into shard tables, and its subjects.

Forgotten records are left out (their keyed hashes are in `forgotten.json`), so a later
`prepare` never brings them back. With `dataset.subject_column` set, `subjects.json` maps
each subject's keyed hash to its records' keyed hashes, for requests that name a subject.

A parquet source is read in chunks (:func:`~unlearn_ops.sisa.dataset_chunks.load_dataset_chunks`),
never whole; a source with a subject column is read whole (its subject index needs every
row), as are CSV files and the built-in datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from unlearn_ops.errors import DatasetError
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["prepare_data"]


def prepare_data(workspace: Workspace) -> dict[int, int]:
    """Load the workspace's dataset and write the shard tables (forgotten records left out).

    With `dataset.subject_column` set, also write `subjects.json` (keyed hashes only) and
    keep the subject column out of the features.
    """
    from unlearn_ops.sisa.dataset_chunks import load_dataset_chunks
    from unlearn_ops.sisa.datasets import Dataset

    spec = workspace.params.dataset
    if spec.subject_column is None:
        return workspace.ensemble.prepare(
            load_dataset_chunks(
                spec.source,
                id_column=spec.id_column,
                label_column=spec.label_column,
                feature_columns=spec.feature_columns,
                base_dir=workspace.root,
                sensitive_column=spec.sensitive_column,
            )
        )
    table, source = _subject_table(workspace)
    features = spec.feature_columns or [
        c
        for c in table.columns
        if c not in (spec.id_column, spec.label_column, spec.subject_column, spec.sensitive_column)
    ]
    dataset = Dataset.from_frame(
        table,
        id_column=spec.id_column,
        label_column=spec.label_column,
        feature_columns=features,
        source=source,
        sensitive_column=spec.sensitive_column,
    )
    _write_subjects(workspace, table, source)
    return workspace.ensemble.prepare(dataset)


def _subject_table(workspace: Workspace) -> tuple[pd.DataFrame, str]:
    from unlearn_ops.sisa.datasets import read_table

    spec = workspace.params.dataset
    path = Path(spec.source)
    path = path if path.is_absolute() else workspace.root / path
    if not path.is_file():
        raise DatasetError(
            spec.source,
            "dataset.subject_column needs a .csv or .parquet file, and there is none here",
        )
    table = read_table(path)
    if spec.subject_column not in table.columns:
        raise DatasetError(
            str(path),
            f"no column {spec.subject_column!r} (dataset.subject_column)",
            f"columns present: {', '.join(map(str, table.columns[:12]))}",
        )
    return table, str(path)


def _write_subjects(workspace: Workspace, table: pd.DataFrame, source: str) -> None:
    """subjects.json: keyed hash of each subject -> keyed hashes of its records."""
    from unlearn_ops.deletion.intake import build_subject_index, write_subject_index

    spec = workspace.params.dataset
    subjects = table[spec.subject_column]
    if subjects.isna().any():
        raise DatasetError(source, f"{int(subjects.isna().sum())} row(s) have no subject")
    index = build_subject_index(
        workspace.settings, subjects.tolist(), table[spec.id_column].tolist()
    )
    write_subject_index(workspace.root, index)

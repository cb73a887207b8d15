"""Preparing a workspace's data: shard tables without forgotten records, and subjects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.workflow.conftest import new_root, open_with_fakes
from unlearn_ops.errors import DatasetError
from unlearn_ops.workflow.preparation import prepare_data


def test_prepare_writes_every_record_to_one_shard_and_maps_subjects(tmp_path: Path) -> None:
    ws = open_with_fakes(new_root(tmp_path / "ws"))
    counts = prepare_data(ws)
    assert sorted(counts) == [0, 1, 2]
    holdout = len(ws.ensemble.read_holdout())
    assert sum(counts.values()) + holdout == 300
    ids = [str(r) for s in counts for r in ws.ensemble.read_shard(s)["record_id"]]
    assert len(ids) == len(set(ids))
    assert "subject" not in ws.ensemble.columns().feature_columns
    text = (ws.root / "subjects.json").read_text()
    assert "person-" not in text  # keyed hashes only
    subjects = json.loads(text)["subjects"]
    assert len(subjects) == 100  # three records per person
    records = sorted(ws.settings.hash_record_id(r) for r in ("0", "1", "2"))
    assert subjects[ws.settings.hash_subject_id("person-0")] == records


def test_forgotten_records_stay_out_when_prepared_again(tmp_path: Path) -> None:
    ws = open_with_fakes(new_root(tmp_path / "ws"))
    prepare_data(ws)
    gone = str(ws.ensemble.read_shard(0)["record_id"].iloc[0])
    ws.ensemble.remove_records([gone])
    counts = prepare_data(ws)
    ids = {str(r) for s in counts for r in ws.ensemble.read_shard(s)["record_id"]}
    assert gone not in ids


def test_a_subject_column_needs_a_file_that_has_it(tmp_path: Path) -> None:
    root = new_root(tmp_path / "ws")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["dataset"]["subject_column"] = "customer"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(DatasetError, match="no column 'customer'"):
        prepare_data(open_with_fakes(root))
    params["dataset"]["source"] = "digits"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(DatasetError, match=r"needs a \.csv or \.parquet file"):
        prepare_data(open_with_fakes(root))
    assert not (root / "data" / "shards").exists()

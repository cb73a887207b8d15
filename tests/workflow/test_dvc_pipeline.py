"""The rendered dvc.yaml: one train stage per shard, and the project's copy is current."""

from __future__ import annotations

from pathlib import Path

import yaml

from unlearn_ops.params import Params, load_params
from unlearn_ops.workflow.dvc_pipeline import render_dvc_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_one_train_stage_per_shard() -> None:
    params = Params.from_mapping({"sisa": {"shards": 3}})
    stages = yaml.safe_load(render_dvc_yaml(params))["stages"]
    assert stages["train"]["foreach"] == ["shard-000", "shard-001", "shard-002"]
    assert "data/shards/${item}.parquet" in stages["train"]["do"]["deps"]
    assert stages["prepare"]["deps"] == ["forgotten.json"]
    assert len([d for d in stages["evaluate"]["deps"] if d.startswith("models/")]) == 3


def test_project_dvc_yaml_matches_project_params() -> None:
    params = load_params(ROOT / "params.yaml")
    assert (ROOT / "dvc.yaml").read_text() == render_dvc_yaml(params)

"""The privacy gate of a forget: it fails a candidate that still remembers, champion stays."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.workflow.conftest import (
    WORKSPACE_PARAMS,
    new_root,
    open_with_fakes,
    register_unrequested,
    request,
)
from unlearn_ops.errors import GateFailedError
from unlearn_ops.params import Params
from unlearn_ops.serving.promotion import promote
from unlearn_ops.serving.versions import CHAMPION
from unlearn_ops.testing.gates import FakeGateRunner
from unlearn_ops.workflow.batch import apply_batch, receive_requests
from unlearn_ops.workflow.preparation import prepare_data
from unlearn_ops.workflow.registration import register_version
from unlearn_ops.workflow.retraining import evaluate, run_gates, train_one_shard
from unlearn_ops.workflow.revisions import record_revision
from unlearn_ops.workflow.workspace import Workspace

# Big enough to memorise mislabelled records; 4 shards: 3 references per record.
PARAMS = Params.from_mapping(
    {
        **WORKSPACE_PARAMS.model_dump(mode="json"),
        "sisa": {"shards": 4, "slices": 1, "salt": "privacy-gate"},
        "model": {"name": "mlp", "hidden_sizes": [256]},
        "training": {"epochs_per_stage": 60, "batch_size": 16, "learning_rate": 0.01},
        "gates": {"min_accuracy": 0.3, "max_accuracy_drop": 0.5, "privacy": True},
    }
)
MISLABELLED = 60


@pytest.fixture
def champion(tmp_path: Path) -> tuple[Workspace, list[str]]:
    """Version 1 champion, trained on data with mislabelled records; the shard-1 ones."""
    root = new_root(tmp_path / "ws", PARAMS)
    frame = pd.read_csv(root / "records.csv")
    rows = np.random.default_rng(0).choice(len(frame), MISLABELLED, replace=False)
    frame.loc[rows, "label"] = (frame.loc[rows, "label"] + 1) % 3  # only memorised, never learnt
    frame.to_csv(root / "records.csv", index=False)
    ws = open_with_fakes(root)
    ws.lineage().init_repository()
    prepare_data(ws)
    trained = [train_one_shard(ws, s) for s in ws.ensemble.shard_ids]
    revision = record_revision(ws, "train", [])
    gates = run_gates(ws, evaluate(ws), None, gate_runner=FakeGateRunner())
    assert [g.gate for g in gates] == ["data", "metric", "fairness"]  # no privacy gate yet
    version = register_version(
        ws,
        kind="train",
        requests=[],
        trained=trained,
        revision=revision,
        gates=gates,
        metrics=evaluate(ws),
        timings={},
    )
    promote(ws, version, gates)
    shard = ws.ensemble.read_shard(1)
    wrong = set(frame.loc[rows, "record_id"].astype(str))
    forgotten = [str(r) for r in shard["record_id"] if str(r) in wrong]
    assert len(forgotten) >= 8
    return ws, forgotten


def forget_and_gate(ws: Workspace, forgotten: list[str], *, retrain: bool) -> list[object]:
    kept = ws.ensemble.model_path(1).read_bytes()
    batch = [request("r1", forgotten)]
    receive_requests(ws, batch)
    apply_batch(ws, batch)
    for shard_id in ws.ensemble.stale_shards():
        train_one_shard(ws, shard_id)
    if not retrain:
        # A forget that did not forget: shard 1 keeps the weights that learnt the records.
        ws.ensemble.model_path(1).write_bytes(kept)
    return run_gates(ws, evaluate(ws), 0.0, gate_runner=FakeGateRunner())  # type: ignore[return-value]


def test_a_forget_that_still_remembers_fails_the_privacy_gate_and_champion_stays(
    champion: tuple[Workspace, list[str]],
) -> None:
    ws, forgotten = champion
    gates = forget_and_gate(ws, forgotten, retrain=False)
    privacy = gates[-1]
    assert privacy.gate == "privacy"  # type: ignore[attr-defined]
    assert privacy.passed is False, privacy.outcomes[0].description  # type: ignore[attr-defined]
    assert "fail" in privacy.outcomes[0].description  # type: ignore[attr-defined]
    version = register_unrequested(ws, "forget", gates)  # type: ignore[arg-type]
    assert version.tag("privacy.verdict") == "fail"
    with pytest.raises(GateFailedError, match="privacy"):
        promote(ws, version, gates)  # type: ignore[arg-type]
    assert ws.registry().alias_version(CHAMPION) == "1"


def test_an_exact_forget_does_not_fail_the_privacy_gate(
    champion: tuple[Workspace, list[str]],
) -> None:
    ws, forgotten = champion
    privacy = forget_and_gate(ws, forgotten, retrain=True)[-1]
    assert privacy.gate == "privacy"  # type: ignore[attr-defined]
    assert privacy.passed is True, privacy.outcomes[0].description  # type: ignore[attr-defined]
    observed = privacy.outcomes[0].observed  # type: ignore[attr-defined]
    assert observed["verdict"] == "pass", observed["reason"]
    assert observed["flagged"] <= observed["allowed"]


def test_the_gate_is_off_by_default() -> None:
    assert WORKSPACE_PARAMS.gates.privacy is False
    assert shutil.which("git")  # the lineage fakes stand in for git, but the CLI needs it

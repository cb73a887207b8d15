"""The fairness gate in the forget flow: a forget that wipes out a class is refused, by name.

Real Prefect (test server), MLflow on sqlite, git + DVC, great-expectations; digits with
tiny params (see conftest).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.forget import forget_records
from pipelines.train import train_ensemble
from tests.pipelines.conftest import make_workspace
from unlearn_ops.errors import GateFailedError
from unlearn_ops.workflow.workspace import Workspace

LABEL = 3


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """Tiny params with the fairness gate on, at its default thresholds."""
    return make_workspace(tmp_path / "ws", gates={"fairness": {"enabled": True}})


def ids_of_label(root: Path, label: int, *, held_out: bool) -> list[str]:
    """Every record of `label` in the shard tables (and in the held-out table if asked)."""
    paths = sorted((root / "data" / "shards").glob("shard-*.parquet"))
    if held_out:
        paths.append(root / "data" / "holdout.parquet")
    tables = [pd.read_parquet(path) for path in paths]
    return [str(r) for t in tables for r in t.loc[t["label"] == label, "record_id"]]


def fairness_of(ws: Workspace, version: str) -> dict[str, object]:
    gates: dict[str, dict[str, object]] = json.loads(
        ws.registry().get_version(version).tag("gates")
    )
    return gates["fairness"]


def refused(workspace: Path, ids: list[str], request_id: str) -> str:
    """Forget `ids`; the gates must refuse it. Returns the error's message."""
    with pytest.raises(GateFailedError, match="champion stays at version 1") as caught:
        forget_records(
            str(workspace),
            [{"request_id": request_id, "record_ids": ids, "reason": "test"}],
        )
    ws = Workspace.open(workspace)
    registry = ws.registry()
    assert registry.alias_version("champion") == "1"
    failed = registry.get_version("2")
    assert not failed.gates_passed
    assert fairness_of(ws, "2")["passed"] is False
    assert "gates FAILED" in failed.description
    state = ws.ledger.request(request_id)
    assert state is not None
    assert state.state == "failed"
    return str(caught.value)


@pytest.mark.slow
def test_forgetting_every_record_of_a_label_is_refused_naming_the_class(workspace: Path) -> None:
    first = train_ensemble(str(workspace))
    assert first["gates"] == {"data": True, "metric": True, "fairness": True}
    ws = Workspace.open(workspace)
    recorded = fairness_of(ws, "1")
    assert recorded["passed"] is True
    outcomes = recorded["outcomes"]
    assert isinstance(outcomes, list)
    # Version 1 has no champion to compare with: every class is measured, none gated.
    assert [o["observed"]["class"] for o in outcomes[1:]] == list(range(10))

    ids = ids_of_label(workspace, LABEL, held_out=True)
    assert len(ids) == 183  # digits has 183 threes
    message = refused(workspace, ids, "req-all-threes")
    # No held-out three is left to measure: the support check names the class.
    assert (
        f"expect_column_distinct_values_to_contain_set on class (class {LABEL}: no training "
        "record left" in message
    )


@pytest.mark.slow
def test_forgetting_the_training_records_of_a_label_fails_its_recall(workspace: Path) -> None:
    train_ensemble(str(workspace))
    ids = ids_of_label(workspace, LABEL, held_out=False)
    message = refused(workspace, ids, "req-trained-threes")
    # The held-out threes are still there: the new version misses them, the champion not.
    assert f"(class {LABEL}: recall drop" in message
    ws = Workspace.open(workspace)
    outcomes = fairness_of(ws, "2")["outcomes"]
    assert isinstance(outcomes, list)
    # The tag may leave the observed values out (it is kept short): read the sentences.
    failed = [o["description"].split(":")[0] for o in outcomes if not o["success"]]
    assert failed == [f"class {LABEL}", f"class {LABEL}"]  # its support, then its recall

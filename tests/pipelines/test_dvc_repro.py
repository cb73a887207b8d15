"""The DVC pipeline is real: the flows leave `dvc status` clean and the `dvc` CLI agrees.

`dvc repro` runs through the real `dvc` command of this virtualenv, with the venv's bin on
PATH so that the stage commands (`unlearn-ops ...`) resolve, as they would for a user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.forget import forget_records
from pipelines.train import train_ensemble
from unlearn_ops.adapters.dvc.lineage import is_clean, stage_status

VENV_BIN = Path(sys.executable).parent
UP_TO_DATE = "Data and pipelines are up to date."


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `dvc` command line, run in the workspace as a user would."""
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
    }
    return subprocess.run(
        [str(VENV_BIN / "dvc"), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def tracked_bytes(root: Path) -> dict[str, bytes]:
    """dvc.lock and the outputs it records, byte for byte."""
    models = [str(p.relative_to(root)) for p in sorted(root.glob("models/*"))]
    return {p: (root / p).read_bytes() for p in ["dvc.lock", "metrics.json", *models]}


@pytest.mark.slow
def test_the_flows_leave_a_pipeline_that_dvc_reproduces(workspace: Path) -> None:
    assert (VENV_BIN / "dvc").is_file()
    assert (VENV_BIN / "unlearn-ops").is_file()

    train_ensemble(str(workspace))
    assert stage_status(workspace) == {}
    assert is_clean(workspace)
    status = dvc(workspace, "status")
    assert status.returncode == 0, status.stderr
    assert UP_TO_DATE in status.stdout

    # Nothing is stale after the flow: `dvc repro` succeeds without running any stage.
    repro = dvc(workspace, "repro")
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert "Running stage" not in repro.stdout, repro.stdout
    assert stage_status(workspace) == {}
    assert is_clean(workspace)

    # Forcing one shard's stage, with the checkpoint cache gone, trains it from scratch
    # through `unlearn-ops train-shard`: the same bits, so dvc.lock does not move.
    before = tracked_bytes(workspace)
    shutil.rmtree(workspace / "checkpoints")
    forced = dvc(workspace, "repro", "--force", "--single-item", "train@shard-001")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "Running stage 'train@shard-001'" in forced.stdout
    assert any(p.is_file() for p in (workspace / "checkpoints").rglob("*"))
    assert tracked_bytes(workspace) == before
    assert stage_status(workspace) == {}
    assert is_clean(workspace)

    # A forget flow commits its revision: DVC sees nothing stale afterwards either.
    table = pd.read_parquet(workspace / "data" / "shards" / "shard-001.parquet")
    forgotten = [str(r) for r in table["record_id"][:2]]
    result = forget_records(str(workspace), [{"request_id": "req-dvc", "record_ids": forgotten}])
    assert result["version"] == "2"
    assert stage_status(workspace) == {}
    assert is_clean(workspace)
    repro = dvc(workspace, "repro")
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert "Running stage" not in repro.stdout, repro.stdout
    assert UP_TO_DATE in repro.stdout

"""`unlearn-ops audit-privacy`: the membership audit of a forget version, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import yaml

if TYPE_CHECKING:
    from tests.conftest import CliRunner


@pytest.fixture(scope="module")
def forgotten(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace of 3 shards trained (version 1), then 12 records forgotten (version 2)."""
    root = tmp_path_factory.mktemp("cli-privacy") / "ws"

    def run(*argv: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "unlearn_ops.cli", *argv],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    run("init", str(root), "--shards", "3", "--slices", "1")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["model"].update({"name": "mlp", "hidden_sizes": [32]})
    params["training"].update({"epochs_per_stage": 5, "learning_rate": 0.01})
    params["gates"].update({"min_accuracy": 0.5})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "-C", str(root), "commit", "-qam", "tiny params"], check=True)
    run("train", "-w", str(root), "--json")
    table = pd.read_parquet(root / "data" / "shards" / "shard-001.parquet")
    ids = ",".join(str(r) for r in table["record_id"][:12])
    run("forget", "--ids", ids, "--request-id", "privacy-1", "-w", str(root), "--json")
    return root


@pytest.mark.flows  # trains and forgets through the flows
def test_audit_privacy_reports_tags_and_refuses_in_one_line(
    forgotten: Path, cli: CliRunner
) -> None:
    fast = ["--resamples", "200", "--references", "4"]
    code, out, err = cli(["audit-privacy", "2", *fast, "-w", str(forgotten), "--json"])
    report = json.loads(out)
    assert code == (1 if report["verdict"] == "fail" else 0), err
    assert report["forgotten"] == 12
    # digits' 360 held-out records calibrate the online test: 2 other shards + 4 trained.
    assert report["method"] == "online"
    assert report["references"] == 2 + 4
    assert set(report["auc"]) == {"value", "low", "high", "confidence"}
    assert report["positive_control_tpr_at_1pct_fpr"] is not None

    code, shown, _ = cli(["show", "2", "-w", str(forgotten), "--json"])
    tags = json.loads(shown)["tags"]
    assert tags["unlearn.privacy.verdict"] == report["verdict"]
    assert tags["unlearn.privacy.flagged"] == f"{report['flagged']}/12"

    code, text, _ = cli(["audit-privacy", "2", *fast, "-w", str(forgotten)])
    assert f"membership audit of version 2: {report['verdict'].upper()}" in text
    assert "(online test)" in text
    # The second audit read the references' scores from the workspace's cache.
    assert list((forgotten / ".unlearn-ops" / "privacy-references").glob("*.npz"))
    assert "positive control (parent version) TPR at 1% FPR" in text

    code, _, err = cli(["audit-privacy", "1", "-w", str(forgotten)])
    assert code != 0
    assert err.strip().count("\n") == 0
    assert "it is a `train` version" in err
    code, _, err = cli(["audit-privacy", "9", "-w", str(forgotten)])
    assert code != 0
    assert err.strip().count("\n") == 0
    assert "9" in err

"""The command line: happy paths and the main bad inputs, through `main` as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import yaml

if TYPE_CHECKING:
    from tests.conftest import CliRunner

TINY = {
    "model": {"name": "mlp", "hidden_sizes": [16]},
    "training": {"epochs_per_stage": 3, "learning_rate": 0.01},
    "gates": {"min_accuracy": 0.5},
}


def init_workspace(root: Path, cli: CliRunner) -> Path:
    code, _, err = cli(["init", str(root), "--shards", "2", "--slices", "2"])
    assert code == 0, err
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture
def workspace(tmp_path: Path, cli: CliRunner) -> Path:
    return init_workspace(tmp_path / "ws", cli)


@pytest.fixture(scope="module")
def trained_original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workspace trained through the CLI for the module (about 10 s)."""
    root = tmp_path_factory.mktemp("cli") / "ws"
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "unlearn_ops.cli",
            "init",
            str(root),
            "--shards",
            "2",
            "--slices",
            "2",
        ],
        capture_output=True,
        text=True,
    ).returncode
    assert code == 0
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "-C", str(root), "commit", "-qam", "tiny params"], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "unlearn_ops.cli", "train", "-w", str(root), "--json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == "1"
    return root


@pytest.fixture
def trained(trained_original: Path, tmp_path: Path) -> Path:
    """A private copy of the trained workspace."""
    copy = tmp_path / "ws"
    shutil.copytree(trained_original, copy)
    return copy


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from unlearn_ops.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, 'heavy import'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "forget" in result.stdout


def test_init_refuses_an_existing_workspace(workspace: Path, cli: CliRunner) -> None:
    code, _, err = cli(["init", str(workspace)])
    assert code == 2
    assert "exists already" in err


def training_ids(workspace: Path, count: int) -> list[str]:
    table = pd.read_parquet(workspace / "data" / "shards" / "shard-000.parquet")
    return [str(r) for r in table["record_id"][:count]]


@pytest.mark.flows  # trains through the train-ensemble flow
def test_train_then_forget_then_verify(trained: Path, cli: CliRunner) -> None:
    first, second = training_ids(trained, 2)
    code, out, err = cli(
        [
            "forget",
            "--ids",
            f"{first},{second}",
            "--request-id",
            "cli-1",
            "-w",
            str(trained),
            "--json",
        ]
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["version"] == "2"
    assert [shard["shard_id"] for shard in report["retrained"]] == [0]
    shard = pd.read_parquet(trained / "data/shards/shard-000.parquet")
    assert first not in shard["record_id"].astype(str).tolist()

    code, out, _ = cli(["verify", "-w", str(trained), "--json"])
    assert code == 0
    assert json.loads(out)["passed"] is True
    code, out, _ = cli(["verify", "1", "--shards", "0", "-w", str(trained)])
    assert code == 0, out
    assert "version 1 PASSED" in out

    # The same ids under a new request id: a no-op naming the version that honours them.
    code, out, _ = cli(["forget", "--ids", first, "-w", str(trained)])
    assert code == 0
    assert "is honoured already by version 2" in out

    code, out, _ = cli(["versions", "-w", str(trained), "--json"])
    rows = json.loads(out)["versions"]
    assert [(r["version"], r["aliases"], r["requests"]) for r in rows] == [
        ("1", "previous", "-"),
        ("2", "champion", "cli-1"),
    ]
    code, out, _ = cli(["show", "champion", "-w", str(trained)])
    assert code == 0
    assert "Forgets request cli-1: 2 records, shard 0 retrained" in out
    assert "unlearn.parent_version = 1" in out


@pytest.mark.flows  # trains through the train-ensemble flow
def test_show_unknown_version(trained: Path, cli: CliRunner) -> None:
    code, _, err = cli(["show", "7", "-w", str(trained)])
    assert code == 2
    assert "has no version '7'" in err


@pytest.mark.flows  # trains through the train-ensemble flow
def test_commands_work_from_inside_a_workspace(
    trained: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(trained / "data")
    code, out, _ = cli(["versions", "--json"])
    assert code == 0
    assert json.loads(out)["versions"][0]["aliases"] == "champion"


@pytest.mark.flows  # trains through the train-ensemble flow
def test_forget_dry_run_changes_nothing(trained: Path, cli: CliRunner) -> None:
    before = snapshot(trained)
    (record,) = training_ids(trained, 1)
    code, out, _ = cli(["forget", "--ids", record, "--dry-run", "-w", str(trained), "--json"])
    assert code == 0
    plan = json.loads(out)
    assert plan["dry_run"] is True
    assert 0 < plan["fraction"] <= 1
    assert snapshot(trained) == before


@pytest.mark.flows  # trains through the train-ensemble flow
def test_forget_unknown_ids_is_one_line_and_changes_nothing(trained: Path, cli: CliRunner) -> None:
    before = snapshot(trained)
    (record,) = training_ids(trained, 1)
    code, _, err = cli(["forget", "--ids", f"{record},no-such-id", "-w", str(trained)])
    assert code == 2
    assert err.count("\n") == 1
    assert "no-such-id" in err
    assert "nothing was changed" in err
    assert "Traceback" not in err
    assert snapshot(trained) == before


@pytest.mark.flows  # trains through the train-ensemble flow
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("ids.json", "[1, 2", "not valid JSON"),
        ("ids.json", '{"ids": [1]}', "JSON list"),
        ("ids.json", "[true]", "JSON list"),
        ("ids.txt", "# nothing\n\n", "no record ids"),
    ],
)
def test_forget_malformed_ids_file(
    trained: Path, cli: CliRunner, name: str, content: str, message: str
) -> None:
    ids_file = trained.parent / name
    ids_file.write_text(content)
    before = snapshot(trained)
    code, _, err = cli(["forget", "--ids-file", str(ids_file), "-w", str(trained)])
    assert code == 2
    assert message in err
    assert snapshot(trained) == before


@pytest.mark.flows  # trains through the train-ensemble flow
def test_forget_ids_file_one_per_line(trained: Path, cli: CliRunner) -> None:
    ids_file = trained.parent / "ids.txt"
    ids_file.write_text("# people who asked\n" + "\n".join(training_ids(trained, 2)) + "\n")
    code, out, err = cli(["forget", "--ids-file", str(ids_file), "-w", str(trained), "--json"])
    assert code == 0, err
    assert json.loads(out)["version"] == "2"


@pytest.mark.flows  # trains through the train-ensemble flow
def test_forget_needs_exactly_one_id_source(trained: Path, cli: CliRunner) -> None:
    code, _, err = cli(["forget", "-w", str(trained)])
    assert code == 2
    assert "exactly one of --ids and --ids-file" in err
    code, _, err = cli(["forget", "--ids", "3,,5", "-w", str(trained)])
    assert code == 2
    assert "empty id" in err


def test_missing_workspace_is_a_clear_error(tmp_path: Path, cli: CliRunner) -> None:
    for command in (["train"], ["forget", "--ids", "1"], ["verify"], ["evaluate"]):
        code, _, err = cli([*command, "-w", str(tmp_path / "nowhere")])
        assert code == 2, command
        assert "no workspace" in err
        assert "Traceback" not in err


def test_invalid_params_name_the_field(workspace: Path, cli: CliRunner) -> None:
    (workspace / "params.yaml").write_text("sisa:\n  shards: zero\n  colour: blue\n")
    code, _, err = cli(["train", "-w", str(workspace)])
    assert code == 2
    assert "sisa.shards" in err
    assert "sisa.colour" in err


def test_untrained_workspace_is_a_clear_error(workspace: Path, cli: CliRunner) -> None:
    code, _, err = cli(["forget", "--ids", "1", "-w", str(workspace)])
    assert code == 2
    assert "no ensemble here" in err


@pytest.mark.flows  # trains through the train-ensemble flow
def test_verify_fails_on_a_tampered_model(trained: Path, cli: CliRunner) -> None:
    info_path = trained / "models" / "shard-001.json"
    info = json.loads(info_path.read_text())
    info["weights_hash"] = "0" * 64
    info_path.write_text(json.dumps(info))
    code, out, _ = cli(["verify", "--shards", "1", "-w", str(trained)])
    assert code == 1
    assert "DIFFERS" in out
    assert "FAILED" in out


@pytest.mark.flows  # trains through the train-ensemble flow
def test_verify_rejects_bad_shard_ids(trained: Path, cli: CliRunner) -> None:
    code, _, err = cli(["verify", "--shards", "x", "-w", str(trained)])
    assert code == 2
    assert "comma-separated integers" in err
    code, _, err = cli(["verify", "--shards", "9", "-w", str(trained)])
    assert code == 2
    assert "no shard 9" in err


@pytest.mark.flows  # trains through the train-ensemble flow
def test_dvc_stage_commands(trained: Path, cli: CliRunner) -> None:
    code, out, _ = cli(["prepare", "-w", str(trained), "--json"])
    assert code == 0
    assert sum(json.loads(out)["records_per_shard"].values()) > 0
    code, out, _ = cli(["train-shard", "shard-001", "-w", str(trained), "--json"])
    assert code == 0
    assert json.loads(out)["resumed_from_stage"] == 2  # every stage cached: nothing retrained
    code, _, err = cli(["train-shard", "shard-x", "-w", str(trained)])
    assert code == 2
    assert "not a shard id" in err
    code, out, _ = cli(["evaluate", "-w", str(trained)])
    assert code == 0
    metrics = json.loads((trained / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1


@pytest.mark.flows  # trains through the train-ensemble flow
def test_demo_runs_end_to_end(tmp_path: Path, cli: CliRunner) -> None:
    root = tmp_path / "demo"
    code, out, err = cli(
        ["demo", "-w", str(root), "--records", "3", "--shards", "2", "--slices", "2"]
    )
    assert code == 0, err
    assert "request demo-request-1: version 2 is champion" in out
    assert "Forgets request demo-request-1: 3 records" in out
    assert "PASSED" in out
    assert f"unlearn-ops ui --workspace {root} --port 5050" in out


def test_demo_refuses_a_directory_that_is_not_a_demo(tmp_path: Path, cli: CliRunner) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    code, _, err = cli(["demo", "-w", str(tmp_path)])
    assert code == 2
    assert "not a demo workspace" in err
    assert (tmp_path / "precious.txt").read_text() == "keep me"

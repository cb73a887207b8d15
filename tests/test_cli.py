"""The command line: happy paths and the main bad inputs, through `main` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from unlearn_ops.cli import main

TINY = {
    "sisa": {"shards": 2, "slices": 2},
    "model": {"name": "mlp", "hidden_sizes": [8]},
    "training": {"epochs_per_stage": 1},
}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "ws"
    code, _, err = run(["init", str(root)], capsys)
    assert code == 0, err
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture
def trained(workspace: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, err = run(["train", "-w", str(workspace), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["shards_trained"] == [0, 1]
    return workspace


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


def test_init_refuses_an_existing_workspace(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["init", str(workspace)], capsys)
    assert code == 2
    assert "exists already" in err


def training_ids(workspace: Path, count: int) -> list[str]:
    table = pd.read_parquet(workspace / "data" / "shards" / "shard-000.parquet")
    return [str(r) for r in table["record_id"][:count]]


def test_train_then_forget_then_verify(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = training_ids(trained, 2)
    code, out, err = run(
        ["forget", "--ids", f"{first},{second}", "-w", str(trained), "--json"], capsys
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["forgotten"] == 2
    assert [shard["shard_id"] for shard in report["retrained"]] == [0]
    assert (
        str(first)
        not in pd.read_parquet(trained / "data/shards/shard-000.parquet")["record_id"]
        .astype(str)
        .tolist()
    )

    code, out, _ = run(["verify", "-w", str(trained), "--json"], capsys)
    assert code == 0
    assert json.loads(out)["passed"] is True

    code, out, _ = run(["forget", "--ids", first, "-w", str(trained)], capsys)
    assert code == 0
    assert "forgotten before" in out


def test_forget_dry_run_changes_nothing(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(trained)
    (record,) = training_ids(trained, 1)
    code, out, _ = run(
        ["forget", "--ids", record, "--dry-run", "-w", str(trained), "--json"], capsys
    )
    assert code == 0
    plan = json.loads(out)
    assert plan["dry_run"] is True
    assert 0 < plan["fraction"] <= 1
    assert snapshot(trained) == before


def test_forget_unknown_ids_is_one_line_and_changes_nothing(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(trained)
    (record,) = training_ids(trained, 1)
    code, _, err = run(["forget", "--ids", f"{record},no-such-id", "-w", str(trained)], capsys)
    assert code == 2
    assert err.count("\n") == 1
    assert "no-such-id" in err
    assert "nothing was changed" in err
    assert "Traceback" not in err
    assert snapshot(trained) == before


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
    trained: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, message: str
) -> None:
    ids_file = trained.parent / name
    ids_file.write_text(content)
    before = snapshot(trained)
    code, _, err = run(["forget", "--ids-file", str(ids_file), "-w", str(trained)], capsys)
    assert code == 2
    assert message in err
    assert snapshot(trained) == before


def test_forget_ids_file_one_per_line(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids_file = trained.parent / "ids.txt"
    ids_file.write_text("# people who asked\n" + "\n".join(training_ids(trained, 2)) + "\n")
    code, out, err = run(
        ["forget", "--ids-file", str(ids_file), "-w", str(trained), "--json"], capsys
    )
    assert code == 0, err
    assert json.loads(out)["forgotten"] == 2


def test_forget_needs_exactly_one_id_source(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["forget", "-w", str(trained)], capsys)
    assert code == 2
    assert "exactly one of --ids and --ids-file" in err
    code, _, err = run(["forget", "--ids", "3,,5", "-w", str(trained)], capsys)
    assert code == 2
    assert "empty id" in err


def test_missing_workspace_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["train"], ["forget", "--ids", "1"], ["verify"], ["evaluate"]):
        code, _, err = run([*command, "-w", str(tmp_path / "nowhere")], capsys)
        assert code == 2, command
        assert "no workspace" in err
        assert "Traceback" not in err


def test_invalid_params_name_the_field(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workspace / "params.yaml").write_text("sisa:\n  shards: zero\n  colour: blue\n")
    code, _, err = run(["train", "-w", str(workspace)], capsys)
    assert code == 2
    assert "sisa.shards" in err
    assert "sisa.colour" in err


def test_untrained_workspace_is_a_clear_error(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["forget", "--ids", "1", "-w", str(workspace)], capsys)
    assert code == 2
    assert "no ensemble here" in err


def test_verify_fails_on_a_tampered_model(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info_path = trained / "models" / "shard-001.json"
    info = json.loads(info_path.read_text())
    info["weights_hash"] = "0" * 64
    info_path.write_text(json.dumps(info))
    code, out, _ = run(["verify", "--shards", "1", "-w", str(trained)], capsys)
    assert code == 1
    assert "DIFFERS" in out
    assert "FAILED" in out


def test_verify_rejects_bad_shard_ids(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["verify", "--shards", "x", "-w", str(trained)], capsys)
    assert code == 2
    assert "comma-separated integers" in err
    code, _, err = run(["verify", "--shards", "9", "-w", str(trained)], capsys)
    assert code == 2
    assert "no shard 9" in err


def test_dvc_stage_commands(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["prepare", "-w", str(trained), "--json"], capsys)
    assert code == 0
    assert sum(json.loads(out)["records_per_shard"].values()) > 0
    code, out, _ = run(["train-shard", "shard-001", "-w", str(trained), "--json"], capsys)
    assert code == 0
    assert json.loads(out)["resumed_from_stage"] == 2  # every stage cached: nothing retrained
    code, _, err = run(["train-shard", "shard-x", "-w", str(trained)], capsys)
    assert code == 2
    assert "not a shard id" in err
    code, out, _ = run(["evaluate", "-w", str(trained)], capsys)
    assert code == 0
    metrics = json.loads((trained / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    params = {"dataset": {"source": "digits"}, **TINY}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    code, out, err = run(["demo", "-w", str(root), "--records", "3"], capsys)
    assert code == 0, err
    assert "forgot 3 records" in out
    assert "certificate for the retrained shards: PASSED" in out

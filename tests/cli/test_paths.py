"""Paths on the command line mean what they meant where the user typed them (issue 11, finding 1).

Each test runs the installed console script in a subprocess whose working directory is
not the workspace: a dataset named relative to the folder that holds it, a workspace, an
ids file, a report and a request named relative to yet another folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from tests.cli.conftest import Console

COLUMNS = ["--id-column", "patient_id", "--label-column", "diagnosis"]
SMALL = ["--shards", "2", "--slices", "2"]


def breast_cancer_csv(folder: Path) -> Path:
    """scikit-learn's breast-cancer table as a user has it: string ids, its own column names."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "diagnosis"})
    frame.insert(0, "patient_id", [f"P{i:04d}" for i in range(len(frame))])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "breast_cancer.csv"
    frame.to_csv(path, index=False)
    return path


def dataset_source(workspace: Path) -> str:
    source: str = yaml.safe_load((workspace / "params.yaml").read_text())["dataset"]["source"]
    return source


def prepared_records(result: object) -> int:
    assert getattr(result, "returncode", None) == 0, getattr(result, "stderr", result)
    counts = json.loads(result.stdout)["records_per_shard"]  # type: ignore[attr-defined]
    return int(sum(counts.values()))


def init_beside_the_data(tmp_path: Path, console: Console) -> Path:
    """`init ws --dataset breast_cancer.csv` run in the CSV's folder; that folder."""
    data = breast_cancer_csv(tmp_path / "data").parent
    init = console(["init", "ws", "--dataset", "breast_cancer.csv", *COLUMNS, *SMALL], cwd=data)
    assert init.returncode == 0, init.stderr
    return data


def test_a_dataset_typed_relative_to_its_folder_is_found_from_anywhere(
    tmp_path: Path, console: Console
) -> None:
    data = init_beside_the_data(tmp_path, console)
    # Outside the workspace: stored as an absolute path, so nothing depends on the cwd.
    assert dataset_source(data / "ws") == str((data / "breast_cancer.csv").resolve())

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    records = prepared_records(console(["prepare", "-w", "../data/ws", "--json"], cwd=elsewhere))
    assert 400 < records < 569  # all 569 rows but the held-out ones


def test_a_dataset_inside_the_workspace_moves_with_it(tmp_path: Path, console: Console) -> None:
    breast_cancer_csv(tmp_path / "ws")
    init = console(["init", "ws", "--dataset", "ws/breast_cancer.csv", *COLUMNS], cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert dataset_source(tmp_path / "ws") == "breast_cancer.csv"

    moved = tmp_path / "moved" / "ws"
    moved.parent.mkdir()
    shutil.move(tmp_path / "ws", moved)
    assert prepared_records(console(["prepare", "--json"], cwd=moved)) > 400


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "missing.csv: file not found"),
        ("empty.csv", b"", "empty.csv: cannot be read"),
        ("notes.txt", b"patient_id,diagnosis\n1,0\n", "unsupported file type '.txt'"),
        ("no-ids.csv", b"id,diagnosis,x\n1,0,0.5\n", "no-ids.csv"),
        ("digitz", None, "'" + "{folder}/digitz' is neither a file nor a built-in dataset"),
        ("tables/", None, "{folder}/tables: is a folder. name the .csv or .parquet file in it"),
    ],
)
def test_init_refuses_a_dataset_that_train_could_not_read(
    tmp_path: Path, console: Console, name: str, content: bytes | None, message: str
) -> None:
    if name.endswith("/"):
        (tmp_path / name).mkdir()
    if content is not None:
        (tmp_path / name).write_bytes(content)
    result = console(["init", "ws", "--dataset", name, *COLUMNS], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: dataset ")
    assert message.format(folder=tmp_path.resolve()) in result.stderr
    assert not (tmp_path / "ws").exists()  # nothing created


@pytest.mark.slow
def test_workspace_ids_file_and_reports_relative_to_another_folder(
    tmp_path: Path, console: Console
) -> None:
    assert console(["init", "ws", *SMALL], cwd=tmp_path).returncode == 0
    here = tmp_path / "here"
    here.mkdir()
    assert prepared_records(console(["prepare", "-w", "../ws", "--json"], cwd=here)) > 0
    (here / "ids.txt").write_text("17\n42\n")

    plan = console(
        ["forget", "--ids-file", "ids.txt", "-w", "../ws", "--dry-run", "--json"], cwd=here
    )
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["dry_run"] is True

    report = console(["report", "-w", "../ws", "-o", "out/q1.html", "--json"], cwd=here)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["files"] == [str(here.resolve() / "out" / "q1.html")]
    assert (here / "out" / "q1.html").is_file()
    folder = console(["report", "-w", "../ws", "-o", "out"], cwd=here)
    assert (folder.returncode, folder.stdout) == (2, "")
    assert (
        folder.stderr
        == f"error: --output {here.resolve() / 'out'} is a folder: name a file in it\n"
    )
    # Without -o, the report lands where the command was typed too.
    default = console(["report", "-w", "../ws", "--format", "markdown"], cwd=here)
    assert default.returncode == 0, default.stderr
    assert (here / "compliance-report.md").is_file()
    assert (here / "compliance-report-timeline.png").is_file()
    assert not list((tmp_path / "ws").glob("compliance-report*"))
    assert not (tmp_path / "ws" / "out").exists()


def test_sign_reads_a_request_relative_to_the_current_folder(
    tmp_path: Path, console: Console
) -> None:
    (tmp_path / "request.json").write_text(
        json.dumps({"request_id": "dsr-1", "record_ids": ["17"], "reason": "GDPR art. 17"})
    )
    key = {"UNLEARN_OPS_REQUEST_SIGNING_KEY": "paths-test-key"}
    result = console(["sign", "request.json"], cwd=tmp_path, env=key)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["request"]["request_id"] == "dsr-1"


@pytest.mark.flows
def test_train_finds_a_dataset_typed_relative_to_its_folder(
    tmp_path: Path, console: Console
) -> None:
    """The issue's steps as written: init and train from the folder that holds the CSV."""
    data = init_beside_the_data(tmp_path, console)
    params = yaml.safe_load((data / "ws" / "params.yaml").read_text())
    params["model"].update({"name": "mlp", "hidden_sizes": [16]})
    params["training"].update({"epochs_per_stage": 2})
    # What is checked is where the data is read from; two epochs on unscaled features
    # reach no accuracy worth a floor.
    params["gates"].update({"min_accuracy": 0.0})
    (data / "ws" / "params.yaml").write_text(yaml.safe_dump(params))

    train = console(["train", "-w", "ws", "--json", "--no-progress"], cwd=data)
    assert train.returncode == 0, train.stderr
    assert json.loads(train.stdout)["version"] == "1"

"""`unlearn-ops federation init`: a federation set up from the deployment's sites file, the
server's held-out table and a params file; every bad file refused before anything is written.

The CLI runs in this process (the `cli` fixture) on a workspace's files; nothing starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import CliRunner
from unlearn_ops.params import Params
from unlearn_ops.workflow.workspace import write_workspace_files

CLIENTS = [f"clinic-{c}-zq" for c in "abcdef"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A workspace, a sites file of six clinics, a held-out CSV and a params file."""
    ws = tmp_path / "ws"
    write_workspace_files(ws, Params.from_mapping({"registry": {"model_name": "fed-setup"}}))
    sites = [
        {"partition_id": i, "client_id": c, "data_path": f"/sites/{c}.parquet"}
        for i, c in enumerate(CLIENTS)
    ]
    (tmp_path / "sites.json").write_text(json.dumps(sites))
    rng = np.random.default_rng(5)
    holdout = pd.DataFrame(rng.normal(size=(40, 3)), columns=["age", "bmi", "dose"])
    holdout["label"] = rng.integers(0, 4, 40)
    holdout.to_csv(tmp_path / "holdout.csv", index=False)
    (tmp_path / "federation.yaml").write_text("rounds: 3\nnum_groups: 2\nlocal_epochs: 1\n")
    return {
        "ws": ws,
        "sites": tmp_path / "sites.json",
        "holdout": tmp_path / "holdout.csv",
        "config": tmp_path / "federation.yaml",
    }


def _init(cli: CliRunner, files: dict[str, Path], *extra: str) -> tuple[int, str, str]:
    argv = ["federation", "init", "--sites", str(files["sites"]), "--holdout"]
    argv += [str(files["holdout"]), "--config", str(files["config"]), "-w", str(files["ws"])]
    return cli([*argv, *extra])


def test_init_keeps_clients_as_keyed_hashes_with_their_groups_and_the_holdout(
    files: dict[str, Path], cli: CliRunner
) -> None:
    code, out, err = _init(cli, files, "--json")
    assert code == 0, err
    done = json.loads(out)
    assert (done["clients"], done["num_features"], done["num_classes"]) == (6, 3, 4)
    assert sum(done["groups"].values()) == 6
    assert set(done["groups"]) == {"0", "1"}
    folder = files["ws"] / "federation"
    text = (folder / "federation.json").read_text()
    assert not any(client in text for client in CLIENTS)
    assert "/sites/" not in text  # the sites' data paths stay at the sites
    state = json.loads(text)
    assert state["params"]["rounds"] == 3
    assert state["feature_columns"] == ["age", "bmi", "dose"]
    assert sorted(c["partition_id"] for c in state["clients"]) == list(range(6))
    holdout = pd.read_parquet(folder / "holdout.parquet")
    assert list(holdout.columns) == ["age", "bmi", "dose", "label"]
    assert len(holdout) == 40
    code, _, err = _init(cli, files)
    assert code != 0  # once: members change by removals
    assert "keeps one already" in err
    code, out, err = cli(["federation", "init", "--help"])
    assert "sites" in out


def test_the_text_output_says_what_to_do_next(files: dict[str, Path], cli: CliRunner) -> None:
    code, out, err = _init(cli, files, "--num-classes", "7")
    assert code == 0, err
    assert "federation of 6 clients in 2 group(s)" in out
    assert "7 classes, 3 rounds" in out
    assert "unlearn-ops federation train" in out


BAD_SITES = {
    "not json": ("[{", "not a JSON file"),
    "not a list": ('{"client_id": "a"}', "a JSON list of"),
    "empty": ("[]", "a JSON list of"),
    "no client": ('[{"partition_id": 0}]', "site 0: no client_id"),
    "bool partition": ('[{"partition_id": true, "client_id": "a"}]', "partition_id must be"),
    "negative partition": ('[{"partition_id": -1, "client_id": "a"}]', "partition_id must be"),
    "client twice": (
        '[{"partition_id": 0, "client_id": "a"}, {"partition_id": 1, "client_id": "a"}]',
        "client 'a' is listed twice",
    ),
    "partition twice": (
        '[{"partition_id": 0, "client_id": "a"}, {"partition_id": 0, "client_id": "b"}]',
        "partition 0 is listed twice",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SITES))
def test_a_bad_sites_file_is_refused_and_nothing_is_written(
    files: dict[str, Path], cli: CliRunner, case: str
) -> None:
    text, message = BAD_SITES[case]
    files["sites"].write_text(text)
    code, _, err = _init(cli, files)
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (files["ws"] / "federation").exists()


BAD_FILES = {  # case: (which file, its content, the message)
    "rounds 0": ("config", "rounds: 0\n", "rounds: Input should be greater than or equal to 1"),
    "unknown key": ("config", "roundz: 3\n", "roundz: Extra inputs are not permitted"),
    "a list": ("config", "- 1\n", "a mapping of federation params"),
    "empty group": ("config", "num_groups: 9\n", "would have no client among 6"),
    "no label": ("holdout", "age,bmi\n1,2\n", "no 'label' column"),
    "text feature": ("holdout", "age,label\nold,1\n", "feature columns must be numbers: age"),
    "text label": ("holdout", "age,label\n1.0,x\n", "must hold class numbers"),
    "no feature": ("holdout", "label\n1\n", "at least one feature column"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_params_or_holdout_file_is_refused_and_nothing_is_written(
    files: dict[str, Path], cli: CliRunner, case: str
) -> None:
    what, content, message = BAD_FILES[case]
    files[what].write_text(content)
    code, _, err = _init(cli, files)
    assert code != 0
    assert message in err, err
    assert not (files["ws"] / "federation").exists()


def test_missing_files_and_too_few_classes_are_refused(
    files: dict[str, Path], cli: CliRunner, tmp_path: Path
) -> None:
    for name in ("sites", "config", "holdout"):
        moved = {**files, name: tmp_path / f"absent-{name}.json"}
        code, _, err = _init(cli, moved)
        assert code != 0
        assert "not found" in err, err
    code, _, err = _init(cli, files, "--num-classes", "3")  # a label is 3
    assert code != 0
    assert "beyond 3 classes" in err
    assert not (files["ws"] / "federation").exists()

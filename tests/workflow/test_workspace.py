"""Workspaces: the files of a new one, finding one from below, opening one, where MLflow lives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearn_ops.adapters.dvc.lineage import DvcLineage
from unlearn_ops.adapters.mlflow.registry import MlflowRegistry
from unlearn_ops.errors import ConfigError, InvalidRequestError, StoreError, WorkspaceNotFoundError
from unlearn_ops.params import Params, load_params
from unlearn_ops.settings import Settings
from unlearn_ops.testing import InMemoryLineage, InMemoryRegistry
from unlearn_ops.workflow.dvc_pipeline import render_dvc_yaml
from unlearn_ops.workflow.workspace import (
    PARAMS_FILE,
    Workspace,
    find_workspace,
    write_workspace_files,
)

PARAMS = Params.from_mapping(
    {"sisa": {"shards": 2, "slices": 2}, "registry": {"model_name": "ws-test"}}
)
NO_SERVER = Settings(tracking_uri=None, registry_uri=None)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "ws"
    write_workspace_files(folder, PARAMS)
    return folder


@pytest.fixture(autouse=True)
def no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("UNLEARN_OPS_TRACKING_URI", "UNLEARN_OPS_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)


# ----------------------------------------------------------------------- new files
def test_a_new_workspace_gets_params_pipeline_and_ignore_files(root: Path) -> None:
    assert sorted(p.name for p in root.iterdir()) == [
        ".dvcignore",
        ".gitignore",
        "dvc.yaml",
        "forgotten.json",
        "params.yaml",
    ]
    assert load_params(root / PARAMS_FILE) == PARAMS
    assert (root / "dvc.yaml").read_text() == render_dvc_yaml(PARAMS)
    assert json.loads((root / "forgotten.json").read_text()) == {"hashes": []}
    assert "/mlflow.db" in (root / ".gitignore").read_text()
    assert "/checkpoints/" in (root / ".dvcignore").read_text()


def test_ignore_files_are_added_to_not_replaced(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("/mine\n")
    write_workspace_files(tmp_path, PARAMS)
    text = (tmp_path / ".gitignore").read_text()
    assert text.startswith("/mine\n")
    assert text.count("/mlflow.db") == 1


def test_an_existing_params_file_is_refused_and_nothing_changes(root: Path) -> None:
    (root / PARAMS_FILE).write_text("seed: 5\n")
    (root / "forgotten.json").write_text('{"hashes": ["kept"]}\n')
    before = snapshot(root)
    with pytest.raises(StoreError, match=r"params\.yaml: exists already"):
        write_workspace_files(root, PARAMS)
    assert snapshot(root) == before


# ------------------------------------------------------------------------- finding
def test_a_workspace_is_found_from_itself_and_from_any_folder_below(root: Path) -> None:
    deep = root / "data" / "shards" / "deeper"
    deep.mkdir(parents=True)
    assert find_workspace(root) == root.resolve()
    assert find_workspace(deep) == root.resolve()
    assert find_workspace(root / "data") == root.resolve()


def test_no_workspace_outside_one(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "below"
    elsewhere.mkdir(parents=True)
    with pytest.raises(WorkspaceNotFoundError, match="unlearn-ops init") as caught:
        find_workspace(elsewhere)
    assert caught.value.path == elsewhere.resolve()


def test_a_params_file_without_a_pipeline_is_not_a_workspace(tmp_path: Path) -> None:
    (tmp_path / PARAMS_FILE).write_text(PARAMS.to_yaml())
    with pytest.raises(WorkspaceNotFoundError):
        find_workspace(tmp_path)


# ------------------------------------------------------------------------- opening
def test_open_reads_the_params(root: Path) -> None:
    workspace = Workspace.open(root, NO_SERVER)
    assert workspace.root == root.resolve()
    assert workspace.params == PARAMS
    assert workspace.model_name == "ws-test"
    assert workspace.ledger.path == root.resolve() / "ledger.jsonl"
    assert workspace.params_path == root.resolve() / PARAMS_FILE


def test_open_without_params_is_workspace_not_found(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceNotFoundError):
        Workspace.open(tmp_path, NO_SERVER)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("sisa:\n  shards: 0\n", "sisa.shards"),
        ("seed: 1\ncolour: red\n", "colour"),
        ("- a\n- list\n", "expected a mapping"),
        ("sisa: [unclosed\n", "not valid YAML"),
        ("registry:\n  model_name: ../up\n", "registry.model_name"),
    ],
    ids=["range", "unknown-key", "not-a-mapping", "not-yaml", "bad-name"],
)
def test_open_with_bad_params_is_a_config_error(root: Path, text: str, named: str) -> None:
    (root / PARAMS_FILE).write_text(text)
    with pytest.raises(ConfigError, match=r"params\.yaml") as caught:
        Workspace.open(root, NO_SERVER)
    assert named in str(caught.value)


# ------------------------------------------------------------------------- MLflow
def test_mlflow_defaults_to_a_sqlite_file_inside_the_workspace(root: Path) -> None:
    workspace = Workspace.open(root)
    uri = workspace.tracking_uri
    assert uri.startswith("sqlite:///")
    database = Path(uri.removeprefix("sqlite:///"))
    assert database.is_absolute()
    assert database == root.resolve() / "mlflow.db"
    assert workspace.registry_uri == uri
    assert workspace.artifact_location == (root.resolve() / "mlartifacts").as_uri()


def test_settings_name_another_tracking_server(root: Path) -> None:
    server = Settings(tracking_uri="http://127.0.0.1:5999")
    workspace = Workspace.open(root, server)
    assert workspace.tracking_uri == "http://127.0.0.1:5999"
    assert workspace.registry_uri == "http://127.0.0.1:5999"
    split = Settings(tracking_uri="http://127.0.0.1:5999", registry_uri="sqlite:////srv/r.db")
    assert Workspace.open(root, split).registry_uri == "sqlite:////srv/r.db"


def test_the_environment_names_the_tracking_server(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_TRACKING_URI", "http://mlflow.internal:5000")
    assert Workspace.open(root).tracking_uri == "http://mlflow.internal:5000"


# ---------------------------------------------------------------------- JSON files
def test_json_files_round_trip_and_a_broken_one_is_a_store_error(root: Path) -> None:
    workspace = Workspace.open(root, NO_SERVER)
    assert workspace.read_json(workspace.registry_path) is None
    workspace.write_json(workspace.registry_path, {"version": "3", "git_sha": "abc"})
    assert workspace.read_json(workspace.registry_path) == {"version": "3", "git_sha": "abc"}
    assert workspace.registry_path.read_text().endswith("\n")
    workspace.metrics_path.write_text("{not json")
    with pytest.raises(StoreError, match=r"metrics\.json: not valid JSON"):
        workspace.read_json(workspace.metrics_path)


# ------------------------------------------------------------------ lock and ports
def test_the_lock_keeps_a_second_flow_out_until_released(root: Path) -> None:
    ws = Workspace.open(root, NO_SERVER)
    other = Workspace.open(root, NO_SERVER)
    with ws.lock(), pytest.raises(InvalidRequestError, match="is busy with another flow"):
        other.lock(timeout=0.05).__enter__()
    with other.lock(timeout=0.05):
        assert (root / ".unlearn-ops" / "lock").exists()


def test_taking_the_lock_removes_a_git_index_lock_left_by_a_killed_run(root: Path) -> None:
    stale = root / ".git" / "index.lock"
    stale.parent.mkdir()
    stale.write_text("")
    with Workspace.open(root, NO_SERVER).lock():
        assert not stale.exists()


def test_injected_ports_are_handed_out_and_kept_when_reopened(root: Path) -> None:
    registry, lineage = InMemoryRegistry("ws-test"), InMemoryLineage(root)
    ws = Workspace.open(root, NO_SERVER, registry=registry, lineage=lineage)
    assert ws.registry() is registry
    assert ws.lineage() is lineage
    reopened = ws.reopen()
    assert (reopened.registry(), reopened.lineage()) == (registry, lineage)
    assert reopened == ws  # the ports are not part of a workspace's identity


def test_the_default_ports_are_the_workspace_stores_built_once(root: Path) -> None:
    ws = Workspace.open(root, NO_SERVER)
    registry = ws.registry()
    assert isinstance(registry, MlflowRegistry)
    assert (registry.tracking_uri, registry.model_name) == (ws.tracking_uri, "ws-test")
    assert registry.artifact_location == ws.artifact_location
    assert ws.registry() is registry
    lineage = ws.lineage()
    assert isinstance(lineage, DvcLineage)
    assert lineage.root == root
    assert not (root / "mlflow.db").exists()  # nothing is opened until a call needs it

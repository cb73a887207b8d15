"""Fixtures for flow tests: Prefect's real (test) server, and small real workspaces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from unlearn_ops.adapters.dvc.lineage import init_repository
from unlearn_ops.params import Params
from unlearn_ops.workflow.workspace import write_workspace_files

TINY = {
    "dataset": {"source": "digits"},
    "sisa": {"shards": 3, "slices": 2},
    "model": {"name": "mlp", "hidden_sizes": [16]},
    "training": {"epochs_per_stage": 3, "learning_rate": 0.01},
    # A 16-unit MLP trained 3 epochs: a class's recall moves 20 points when params change
    # (a rollback by replay), so the fairness gate is on only where a test asks for it
    # (tests/pipelines/test_fairness_flow.py).
    "gates": {"min_accuracy": 0.5, "max_accuracy_drop": 0.05, "fairness": {"enabled": False}},
    "registry": {"model_name": "flow-test"},
}


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    """One Prefect test server for the session (about 10 s to start on 2 cores)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def make_workspace(root: Path, **overrides: dict[str, object]) -> Path:
    """A real git + DVC workspace on digits with tiny params."""
    data = {key: dict(value) for key, value in TINY.items()}
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    write_workspace_files(root, Params.from_mapping(data))
    init_repository(root)
    return root


def set_params(root: Path, section: str, **values: object) -> None:
    """Edit params.yaml in place (as a user would between runs)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def edit_params() -> object:
    """`edit_params(root, section, **values)` edits a workspace's params.yaml."""
    return set_params


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws")

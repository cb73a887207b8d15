"""Lineage in the MLflow UI, checked in a real browser (headless Chromium) on a real server.

One tiny workspace is trained and forgets one request; `mlflow server` then serves its
sqlite store on loopback through :mod:`unlearn_ops.adapters.mlflow.ui`, and Chromium
renders the champion's model version page (a React app: the DOM exists only after its
JavaScript ran). The CLI's `unlearn-ops ui` is checked to print that page and to stop its
server, process group and all, on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.forget import forget_records
from pipelines.train import train_ensemble
from tests.pipelines.conftest import make_workspace
from unlearn_ops.adapters.mlflow.ui import MlflowUiServer, find_free_port
from unlearn_ops.workflow.workspace import Workspace

MODEL = "ui-test"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# In CI the browser test must run: a missing Chromium fails the run instead of skipping.
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")


@pytest.fixture
def chromium_binary() -> str:
    """The Chromium to drive; skips without one, except in CI (CI=true), where it fails."""
    if CHROMIUM is None:
        reason = "no chromium binary (make test installs it)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true, so the browser test may not skip", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def forgotten_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Version 1 trained from scratch, version 2 (champion) forgets request ui-req-1."""
    root = make_workspace(tmp_path_factory.mktemp("ui") / "ws", registry={"model_name": MODEL})
    train_ensemble(str(root))
    ws = Workspace.open(root)
    record_ids = [str(r) for r in ws.ensemble.read_shard(1)["record_id"][:2]]
    forget_records(str(root), [{"request_id": "ui-req-1", "record_ids": record_ids}])
    return ws


@pytest.fixture
def ui_server(forgotten_workspace: Workspace, tmp_path: Path) -> Iterator[MlflowUiServer]:
    ws = forgotten_workspace
    server = MlflowUiServer(
        ws.tracking_uri,
        ws.artifact_location,
        host="127.0.0.1",
        port=find_free_port(),
        log_path=tmp_path / "mlflow-server.log",
    )
    try:
        server.start(timeout=90)
        yield server
    finally:
        server.stop()
    assert not server.running


def experiment_of(ws: Workspace, run_id: str) -> str:
    """The experiment id of a run (part of the run page's URL)."""
    return str(ws.registry().client.get_run(run_id).info.experiment_id)


def chromium(url: str, profile: Path, *args: str) -> str:
    """Run headless Chromium on `url` until the page settles; its stdout."""
    assert CHROMIUM is not None
    completed = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-crash-reporter",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return completed.stdout


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.usefixtures("chromium_binary")
def test_the_champion_page_shows_its_lineage_in_a_browser(
    forgotten_workspace: Workspace, ui_server: MlflowUiServer, tmp_path: Path
) -> None:
    champion = forgotten_workspace.registry().get_version("champion")
    assert champion.version == "2"
    url = ui_server.model_version_url(MODEL, "2")
    assert url == f"{ui_server.url}/#/models/{MODEL}/versions/2"

    git_sha, data_md5 = champion.tag("git_sha"), champion.tag("data_md5")

    screenshot = tmp_path / "champion-version-page.png"
    dom = chromium(
        url,
        tmp_path / "profile",
        "--dump-dom",
        f"--screenshot={screenshot}",
        "--window-size=1400,1000",
        "--hide-scrollbars",
    )
    assert screenshot.stat().st_size > 10_000  # kept under tmp_path, to look at

    # The description, rendered from markdown: what the version is, a link to its parent's
    # page, and where its data came from.
    assert "Forgets request ui-req-1: 2 records, shard 1 retrained from slice" in dom
    assert re.search(rf'<a [^>]*href="#/models/{MODEL}/versions/1"[^>]*>version 1</a>', dom)
    assert f"Data: git {git_sha[:12]}, DVC md5 {data_md5}." in dom
    # The provenance tags, in the version's tag table.
    assert re.search(r'unlearn\.request_ids</td><td [^>]*><div [^>]*>\["ui-req-1"\]</div>', dom)
    assert re.search(r"unlearn\.parent_version</td><td [^>]*><div [^>]*>1</div>", dom)

    # Its run: the training data as a dataset input named by its git revision, with the
    # DVC md5 as digest, and the `unlearn.dvc_rev` tag.
    experiment_id = experiment_of(forgotten_workspace, champion.run_id)
    run_dom = chromium(
        f"{ui_server.url}/#/experiments/{experiment_id}/runs/{champion.run_id}",
        tmp_path / "profile",
        "--dump-dom",
    )
    assert f"shards@{git_sha[:12]} ({data_md5})" in run_dom
    assert re.search(rf'unlearn\.dvc_rev</span><span [^>]*title="{git_sha}">', run_dom)


@pytest.mark.slow
def test_the_ui_command_prints_the_champion_page_and_stops_on_ctrl_c(
    forgotten_workspace: Workspace,
) -> None:
    port = find_free_port()
    command = [sys.executable, "-m", "unlearn_ops.cli", "ui", "--port", str(port)]
    command += ["--workspace", str(forgotten_workspace.root)]
    lines: list[str] = []
    rest = ""
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        try:
            assert process.stdout is not None
            # Until the page is printed (or the command ends: `ui` gives up after 60 s).
            for line in process.stdout:
                lines.append(line)
                if "champion, version" in line:
                    break
            page = f"http://127.0.0.1:{port}/#/models/{MODEL}/versions/2"
            assert any(page in line for line in lines), "".join(lines)
            process.send_signal(signal.SIGINT)
            rest, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:  # SIGTERM still stops the server's group, SIGKILL not
                process.terminate()
                try:
                    process.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
    assert process.returncode == 0, "".join(lines) + rest
    assert "MLflow UI stopped" in rest
    # Nothing of the server's process group still listens on the port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0

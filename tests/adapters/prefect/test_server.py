"""The workspace's local Prefect server: a real `prefect server start` on loopback.

One server for the module (it takes seconds to start on two cores): found again rather
than started twice, its flow runs visible through its API when the CLI's `train` runs in
a new process, replaced when its record names a dead process, and stopped with its group.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from unlearn_ops.adapters.prefect.server import (
    LocalServer,
    ensure_server,
    running_server,
    stop_server,
)
from unlearn_ops.adapters.process import group_alive, stop_groups

pytestmark = [pytest.mark.servers, pytest.mark.slow, pytest.mark.timeout(600)]


def flow_run_names(server: LocalServer) -> list[str]:
    request = urllib.request.Request(
        f"{server.api_url}/flow_runs/filter",
        data=json.dumps({"limit": 50}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        runs = json.loads(response.read())
    flows = {}
    for run in runs:
        flow_id = run["flow_id"]
        if flow_id not in flows:
            with opener.open(f"{server.api_url}/flows/{flow_id}", timeout=30) as answer:
                flows[flow_id] = json.loads(answer.read())["name"]
    return [flows[run["flow_id"]] for run in runs]


def unlearn_ops(argv: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "unlearn-ops"
    return subprocess.run(
        [str(executable), *argv], capture_output=True, text=True, env=environment, check=False
    )


def test_commands_share_one_server_per_workspace_and_stop_it(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")},
        "UNLEARN_OPS_PREFECT_SERVER": "local",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),  # its own database, not the user's
        "UNLEARN_OPS_TORCH_THREADS": "1",
    }
    init = unlearn_ops(["init", str(root), "--shards", "2", "--slices", "1"], environment)
    assert init.returncode == 0, init.stderr
    try:
        trained = unlearn_ops(["train", "-w", str(root), "--json", "--no-progress"], environment)
        assert trained.returncode == 0, trained.stderr[-2000:]
        assert "started a Prefect server for this workspace" in trained.stderr
        server = running_server(root)
        assert server is not None
        # The flow ran on it: its run is in the server's database.
        assert "train-ensemble" in flow_run_names(server)

        # Found again, not started twice; the CLI says where it is.
        assert ensure_server(root) == (server, False)
        status = unlearn_ops(["server", "status", "-w", str(root), "--json"], environment)
        assert json.loads(status.stdout) == {
            "running": True,
            "pid": server.pid,
            "url": server.ui_url,
            "api_url": server.api_url,
            "warm_runner_pid": None,  # this test runs its commands without one
        }

        # A record naming a process that is not the server (a reused pid): a new server.
        record = root / ".unlearn-ops" / "prefect-server.json"
        record.write_text(json.dumps({"pid": os.getpid(), "started_at": 0.0, "port": 1}))
        assert running_server(root) is None
        replacement, started = ensure_server(root, timeout=300)
        assert started
        assert replacement.pid != server.pid
        assert group_alive(server.pid)  # the record lied: the old one was not ours to stop
        stop_server(root)
        record.write_text(json.dumps(dataclasses.asdict(server)))  # the first one again
    finally:
        stopped = unlearn_ops(["server", "stop", "-w", str(root), "--json"], environment)
    assert json.loads(stopped.stdout)["stopped"]
    assert not group_alive(server.pid)
    assert running_server(root) is None
    again = unlearn_ops(["server", "stop", "-w", str(root), "--json"], environment)
    assert json.loads(again.stdout) == {"stopped": False, "warm_runner_stopped": False}


def test_a_deleted_workspace_takes_its_server_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unlearn_ops.adapters.prefect import server as module

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setattr(module, "WATCH_SECONDS", 0.5)
    root = tmp_path / "ws"
    root.mkdir()
    server, started = ensure_server(root, timeout=300)
    assert started
    try:
        time.sleep(2.0)  # a few of the watcher's looks: the workspace is there, it stays
        assert running_server(root) == server
        shutil.rmtree(root)
        deadline = time.monotonic() + 60
        while group_alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert not group_alive(server.pid)
    finally:
        stop_groups([server.pid], timeout=20.0)

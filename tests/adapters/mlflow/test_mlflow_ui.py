"""The MLflow UI server's lifecycle, without a browser (that is tests/pipelines/test_ui.py)."""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from unlearn_ops.adapters.mlflow.ui import MlflowUiServer, find_free_port, page_url
from unlearn_ops.errors import RegistryError


def test_pages_are_hash_routes_with_the_model_name_encoded() -> None:
    assert page_url("http://127.0.0.1:5050/", "my model", "3") == (
        "http://127.0.0.1:5050/#/models/my%20model/versions/3"
    )
    assert page_url("http://h:1", "m") == "http://h:1/#/models/m"
    server = MlflowUiServer("sqlite:////x/mlflow.db", "/x/art", host="::1", port=5051)
    assert server.url == "http://[::1]:5051"
    assert server.model_version_url("m", "2") == "http://[::1]:5051/#/models/m/versions/2"


def test_the_command_serves_the_store_with_one_worker(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    server = MlflowUiServer(store, str(tmp_path / "art"), port=5052, registry_store_uri=store)
    command = server.command()
    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert command[command.index("--backend-store-uri") + 1] == store
    assert "--registry-store-uri" not in command  # the same store: said once
    assert command[-6:] == ["--host", "127.0.0.1", "--port", "5052", "--workers", "1"]
    other = MlflowUiServer(store, "/art", registry_store_uri="sqlite:////other.db").command()
    assert other[other.index("--registry-store-uri") + 1] == "sqlite:////other.db"


def test_construction_and_stop_before_start_do_nothing(tmp_path: Path) -> None:
    server = MlflowUiServer(f"sqlite:///{tmp_path / 'never.db'}", str(tmp_path / "art"))
    assert not server.running
    server.stop()
    assert server.wait() == 0
    assert not list(tmp_path.iterdir())


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MlflowUiServer("sqlite:////x.db", "/art", port=port, log_path=tmp_path / "log")
        with pytest.raises(RegistryError, match=rf"port {port} on 127.0.0.1 is already in use"):
            server.start()
    assert not server.running
    assert not (tmp_path / "log").exists()


@pytest.mark.servers  # starts `mlflow server`
def test_a_server_that_exits_is_reported_with_its_output(tmp_path: Path) -> None:
    server = MlflowUiServer("no-such-scheme://store", str(tmp_path / "art"), port=find_free_port())
    with pytest.raises(RegistryError, match=r"`mlflow server` exited with code [1-9]"):
        server.start(timeout=120)
    assert not server.running


@pytest.mark.servers  # a real `mlflow server`
def test_a_real_server_answers_then_its_whole_group_stops(tmp_path: Path) -> None:
    port = find_free_port()
    log = tmp_path / "ui.log"
    server = MlflowUiServer(
        f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "art"), port=port, log_path=log
    )
    with server:
        assert server.running
        listening = {
            c.pid
            for c in psutil.net_connections("tcp")
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
        }
        groups = {os.getpgid(pid) for pid in listening if pid}
        assert len(groups) == 1  # the workers listen in the leader's group, not ours
        (group,) = groups
        assert group != os.getpgid(0)
        with urllib.request.urlopen(f"{server.url}/health", timeout=10) as answer:
            assert answer.status == 200
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert log.exists()  # a log the caller named is kept

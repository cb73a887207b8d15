"""Shards trained on workers without the workspace's disk, through S3 (issue 15, part 1).

Against moto's S3 server on loopback and a real Dask `LocalCluster` of processes: the
weights are the threads runner's, a worker needs nothing but the exchange (the workspace
is moved away while it trains), a forget resumes from the checkpoint staged for it and its
certificate passes, and nothing stays in the bucket after a run.
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pandas as pd
import pytest
from moto.server import ThreadedMotoServer

from pipelines.runner import run_flow
from pipelines.train import train_ensemble
from tests.conftest import CliRunner
from tests.scale.conftest import copy_for_dask
from tests.scale.test_dask_training import shard_hashes
from tests.scale.test_dask_training import threads_hashes as threads_hashes  # the fixture
from unlearn_ops.adapters.aws.exchange import S3Exchange
from unlearn_ops.errors import StoreError
from unlearn_ops.settings import Settings
from unlearn_ops.workflow.shard_exchange import (
    collect_shard,
    stage_shard,
    train_staged_shard,
)
from unlearn_ops.workflow.workspace import Workspace

pytestmark = [pytest.mark.flows, pytest.mark.servers]

BUCKET = "exchange"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with the bucket."""
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=BUCKET)
    try:
        yield url
    finally:
        server.stop()
        werkzeug.setLevel(level)


@pytest.fixture
def s3_environment(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 in this process and in the workers it starts talks to moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("UNLEARN_OPS_DEVICE", "cpu")


def task_runs_named(prefix: str) -> list[str]:
    """The task runs of the session's Prefect server whose name starts with `prefix`."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [run.name for run in client.read_task_runs() if run.name.startswith(prefix)]


def bucket_keys() -> list[str]:
    return S3Exchange(BUCKET, "").keys()


@pytest.mark.usefixtures("s3_environment")
def test_the_exchange_stores_reads_and_clears_objects_under_its_own_prefix() -> None:
    first = S3Exchange.for_run(f"s3://{BUCKET}/runs")
    second = S3Exchange.for_run(f"s3://{BUCKET}/runs")
    assert first.prefix != second.prefix
    first.put("a/b", b"one")
    second.put("a/b", b"two")
    assert first.get("a/b") == b"one"
    assert (first.contains("a/b"), first.contains("nope")) == (True, False)
    with pytest.raises(KeyError):
        first.get("nope")
    copy = pickle.loads(pickle.dumps(first))  # noqa: S301 - our own bytes; no client inside
    assert copy.get("a/b") == b"one"
    first.clear()
    assert first.keys() == []
    assert second.keys() == ["a/b"]  # another run's objects are not touched
    second.clear()
    with pytest.raises(StoreError, match="NoSuchBucket"):
        S3Exchange("no-such-bucket", "p").put("k", b"x")


@pytest.mark.usefixtures("s3_environment")
def test_a_shard_trains_from_the_exchange_alone_into_the_local_weights(
    tmp_path: Path, prepared_template: Path
) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    shutil.copytree(prepared_template, local, symlinks=True)
    shutil.copytree(prepared_template, remote, symlinks=True)
    Workspace.open(local, Settings(device="cpu")).ensemble.train_shard(1)

    ws = Workspace.open(remote, Settings(device="cpu"))
    exchange = S3Exchange.for_run(f"s3://{BUCKET}/runs")
    job = stage_shard(ws, exchange, 1)
    away = tmp_path / "moved-away"
    remote.rename(away)  # the worker cannot read the workspace: only the exchange
    try:
        result = train_staged_shard(pickle.loads(pickle.dumps(job)))  # noqa: S301 - ours
    finally:
        away.rename(remote)
    assert collect_shard(ws, exchange, result).weights_hash == result.trained.weights_hash
    exchange.clear()

    assert shard_hashes(remote)[1] == shard_hashes(local)[1]
    for name in ("shard-001.json", "shard-001.pt"):
        assert (remote / "models" / name).read_bytes() == (local / "models" / name).read_bytes()
    local_checkpoints = sorted(p.name for p in (local / "checkpoints").rglob("*") if p.is_file())
    remote_checkpoints = sorted(p.name for p in (remote / "checkpoints").rglob("*") if p.is_file())
    assert remote_checkpoints == local_checkpoints  # stages and their record index
    assert bucket_keys() == []


@pytest.mark.slow  # DP-SGD training of one digits shard, twice (about 30 s)
@pytest.mark.usefixtures("s3_environment")
def test_a_dp_shard_through_the_exchange_uses_the_workspace_key_and_refuses_another(
    tmp_path: Path, prepared_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("opacus")
    from pydantic import SecretStr

    from tests.pipelines.conftest import set_params
    from unlearn_ops.errors import NoiseKeyMismatchError
    from unlearn_ops.sisa.dp import noise_key_fingerprint

    local, remote = tmp_path / "local", tmp_path / "remote"
    for root in (local, remote):
        shutil.copytree(prepared_template, root, symlinks=True)
        set_params(root, "training", dp={"enabled": True, "epsilon": 8.0})
    # The key comes from the settings (a library user's Settings), not from the environment.
    monkeypatch.delenv("UNLEARN_OPS_DP_NOISE_KEY", raising=False)
    settings = Settings(device="cpu", dp_noise_key=SecretStr("operator"))
    Workspace.open(local, settings).ensemble.train_shard(1)

    ws = Workspace.open(remote, settings)
    exchange = S3Exchange.for_run(f"s3://{BUCKET}/runs")
    job = stage_shard(ws, exchange, 1)
    monkeypatch.setenv("UNLEARN_OPS_DP_NOISE_KEY", "a worker set up with another key")
    stray = train_staged_shard(job)
    with pytest.raises(NoiseKeyMismatchError, match=r"shards \[1\] drew their DP noise"):
        collect_shard(ws, exchange, stray)
    assert not (remote / "models" / "shard-001.pt").exists()  # nothing was served

    monkeypatch.setenv("UNLEARN_OPS_DP_NOISE_KEY", "operator")  # the worker's own key
    result = train_staged_shard(job)
    collect_shard(ws, exchange, result)
    exchange.clear()
    assert shard_hashes(remote)[1] == shard_hashes(local)[1]
    meta = json.loads((remote / "models" / "shard-001.json").read_text())
    assert meta["dp_noise_key_fingerprint"] == noise_key_fingerprint(b"operator")


@pytest.mark.usefixtures("s3_environment")
def test_weights_tampered_with_in_the_exchange_are_refused(
    tmp_path: Path, prepared_template: Path
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(prepared_template, root, symlinks=True)
    ws = Workspace.open(root, Settings(device="cpu"))
    exchange = S3Exchange.for_run(f"s3://{BUCKET}/runs")
    result = train_staged_shard(stage_shard(ws, exchange, 0))
    other = train_staged_shard(stage_shard(ws, exchange, 2))
    exchange.put(result.weights_key, exchange.get(other.weights_key))
    with pytest.raises(StoreError, match="not the ones trained"):
        collect_shard(ws, exchange, result)
    exchange.clear()
    assert not (root / "models" / "shard-000.pt").exists()  # nothing was served


@pytest.mark.usefixtures("s3_environment")
def test_a_local_cluster_through_the_exchange_trains_and_forgets_exactly(
    tmp_path: Path,
    prepared_template: Path,
    threads_hashes: dict[int, str],
    monkeypatch: pytest.MonkeyPatch,
    cli: CliRunner,
) -> None:
    root = copy_for_dask(
        prepared_template,
        tmp_path / "through-s3",
        monkeypatch,
        dask_workers="2",
        shard_exchange=f"s3://{BUCKET}/unlearn-ops",
    )

    result = run_flow(train_ensemble, str(root))

    assert result["version"] == "1"
    assert shard_hashes(root) == threads_hashes
    assert bucket_keys() == []
    assert len(task_runs_named("train-staged-shard")) == 3  # on the workers, via S3

    # A forget in the last slice of shard 0 resumes from the checkpoint staged for it.
    table = pd.read_parquet(root / "data" / "shards" / "shard-000.parquet")
    record = str(table.loc[table["slice_id"] == table["slice_id"].max(), "record_id"].iloc[0])
    code, out, err = cli(["forget", "--ids", record, "-w", str(root), "--json"])
    assert code == 0, err
    retrained = json.loads(out)["retrained"]
    assert [(r["shard_id"], r["first_stage"]) for r in retrained] == [(0, 1)]
    assert bucket_keys() == []
    code, out, err = cli(["verify", "-w", str(root), "--json"])
    assert code == 0, err
    assert json.loads(out)["passed"] is True


def test_a_malformed_exchange_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from unlearn_ops.errors import ConfigError
    from unlearn_ops.settings import load_settings

    monkeypatch.setenv("UNLEARN_OPS_SHARD_EXCHANGE", "/a/local/folder")
    with pytest.raises(ConfigError, match="UNLEARN_OPS_SHARD_EXCHANGE"):
        load_settings()

"""The weights do not depend on the runner: threads, a LocalCluster of processes, and a
cluster started apart give the same shard hashes (issue 15, "What must hold")."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import distributed
import pytest

from pipelines.runner import run_flow
from pipelines.train import train_ensemble
from tests.conftest import CliRunner
from tests.scale.conftest import copy_for_dask
from unlearn_ops.workflow.workspace import Workspace

pytestmark = [pytest.mark.flows, pytest.mark.servers]


def shard_hashes(root: Path) -> dict[int, str]:
    """The weights hash each served shard recorded, by shard id."""
    return {
        int(path.stem.removeprefix("shard-")): json.loads(path.read_text())["weights_hash"]
        for path in sorted((root / "models").glob("shard-*.json"))
    }


@pytest.fixture
def threads_hashes(prepared_copy: Path, monkeypatch: pytest.MonkeyPatch) -> dict[int, str]:
    """The hashes of the default runner (a thread pool of two)."""
    monkeypatch.setenv("UNLEARN_OPS_DEVICE", "cpu")
    monkeypatch.setenv("UNLEARN_OPS_MAX_PARALLEL_SHARDS", "2")
    result = run_flow(train_ensemble, str(prepared_copy))
    assert result["version"] == "1"
    hashes = shard_hashes(prepared_copy)
    assert sorted(hashes) == [0, 1, 2]
    return hashes


def test_a_used_workspace_pickles(prepared_copy: Path) -> None:
    """Shard tasks carry the workspace to other processes: it must survive pickling."""
    ws = Workspace.open(prepared_copy)
    ws.ensemble.columns()
    ws.registry()
    ws.lineage()
    copy = pickle.loads(pickle.dumps(ws))  # noqa: S301 - our own bytes, just made
    assert (copy.root, copy.params, copy.settings) == (ws.root, ws.params, ws.settings)
    assert copy.ensemble.shard_ids == ws.ensemble.shard_ids


def test_local_cluster_of_processes_gives_the_threads_weights(
    tmp_path: Path,
    prepared_template: Path,
    threads_hashes: dict[int, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = copy_for_dask(prepared_template, tmp_path / "on-dask", monkeypatch, dask_workers="2")

    result = run_flow(train_ensemble, str(root))

    assert result["version"] == "1"
    assert {r["shard_id"] for r in result["retrained"]} == {0, 1, 2}
    assert shard_hashes(root) == threads_hashes


def test_separately_started_cluster_gives_the_threads_weights(
    tmp_path: Path,
    prepared_template: Path,
    threads_hashes: dict[int, str],
    separate_cluster: str,
    monkeypatch: pytest.MonkeyPatch,
    cli: CliRunner,
) -> None:
    root = copy_for_dask(
        prepared_template, tmp_path / "on-cluster", monkeypatch, dask_address=separate_cluster
    )

    result = run_flow(train_ensemble, str(root))

    assert result["version"] == "1"
    assert shard_hashes(root) == threads_hashes
    # `verify` on Dask: the certificate's retrainings run on the same cluster, and pass.
    code, out, err = cli(["verify", "1", "-w", str(root), "--json"])
    assert code == 0, err
    certificate = json.loads(out)
    assert certificate["passed"] is True
    assert [s["scratch_hash"] for s in certificate["shards"]] == [
        threads_hashes[s] for s in (0, 1, 2)
    ]
    assert (certificate["device"], certificate["device_name"]) == ("cpu", "cpu")
    # The shards really ran on the cluster's workers, and on both of them.
    with distributed.Client(separate_cluster, set_as_default=False) as client:
        ran = client.run(trained_here)
    assert sum(ran.values()) == 3 + 3  # training, then the certificate
    assert all(ran.values()), ran


def trained_here(dask_worker: distributed.Worker) -> int:
    """Run on a worker: how many shard tasks it executed (from its transition log)."""
    return sum(
        1
        for entry in dask_worker.state.log
        if str(entry[0]).startswith(("train_one_shard", "retrain_from_scratch"))
        and tuple(entry[1:3]) == ("executing", "memory")
    )

"""A real Flower deployment on loopback: train client groups, withdraw a client, see it gone.

The first withdrawal goes through the inbox and the drain flow (as a listener's would), its
certificate through the CLI, the second by the `remove-client` flow with FedEraser.

SuperLink and four SuperNodes, each its own process (infra/flower.py), the Flower App of
`federation/` run by `flwr run` from .venv-flower (`make flower`), the flows on Prefect's
test server, the registry a sqlite MLflow store in the workspace. Kept short: a 16-unit
MLP on digits, 2 groups, 2 rounds, 1 local epoch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import CliRunner, signed_withdrawal
from unlearn_ops.adapters.dvc.lineage import init_repository
from unlearn_ops.params import Params
from unlearn_ops.workflow.workspace import Workspace, write_workspace_files

ROOT = Path(__file__).resolve().parents[2]
FLOWER_BIN = Path(os.environ.get("UNLEARN_OPS_FLOWER_BIN") or ROOT / ".venv-flower" / "bin")
SIGNING_KEY = "flower-test-signing-key"
ID_HASH_KEY = "flower-test-id-hash-key"
CLIENTS = [f"hospital-{i}" for i in range(4)]

pytestmark = pytest.mark.skipif(
    not (FLOWER_BIN / "flwr").exists() and os.environ.get("CI") is None,
    reason="no .venv-flower: run `make flower` (CI builds it and runs this test)",
)


def _load_infra() -> ModuleType:
    spec = importlib.util.spec_from_file_location("infra_flower", ROOT / "infra" / "flower.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["infra_flower"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _tables(tmp_path: Path) -> tuple[list[Path], pd.DataFrame]:
    from sklearn.datasets import load_digits

    from unlearn_ops.federated.data import make_federated_data

    digits = load_digits()
    data = make_federated_data(
        (digits.data / 16).astype(np.float32),
        digits.target.astype(np.int64),
        num_clients=len(CLIENTS),
        alpha=1.0,
        seed=0,
        root_size=20,
    )
    columns = [f"pixel{j:02d}" for j in range(data.num_features)]
    paths = []
    for index, client in enumerate(data.clients):
        frame = pd.DataFrame(client.features, columns=columns)
        frame["label"] = client.labels
        # Sites keep CSV (as hmnist_28_28_L.csv comes) or parquet: two of each.
        paths.append(tmp_path / f"site-{index}.{'csv' if index % 2 else 'parquet'}")
        if index % 2:
            frame.to_csv(paths[-1], index=False)
        else:
            frame.to_parquet(paths[-1])
    holdout = pd.DataFrame(data.test_features, columns=columns)
    holdout["label"] = data.test_labels
    return paths, holdout


def _read_site(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


@dataclass
class Federation:
    """A trained federation on a running deployment."""

    ws: Workspace
    home: str
    flower_bin: str
    first: str
    deployment: Any
    paths: list[Path]
    params: Any


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """Four SuperNodes, two groups, trained; everything stopped (and checked) afterwards."""
    from pipelines.federated import federated_train
    from unlearn_ops.federated.config import FederationParams

    tmp_path = tmp_path_factory.mktemp("flower")
    infra = _load_infra()
    paths, holdout = _tables(tmp_path)
    root = tmp_path / "ws"
    write_workspace_files(
        root,
        Params.from_mapping(
            # Two rounds of a 16-unit MLP: removing a client moves accuracy a few points.
            {"registry": {"model_name": "federated-test"}, "gates": {"max_accuracy_drop": 0.2}}
        ),
    )
    init_repository(root)  # git + DVC, as `unlearn-ops init` leaves it: the lineage
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", SIGNING_KEY)
        patch.setenv("UNLEARN_OPS_ID_HASH_KEY", ID_HASH_KEY)
        ws = Workspace.open(root)
        # Set up as a user does: the sites file that starts the deployment, the server's
        # held-out table and a params file, through `unlearn-ops federation init`.
        config = (
            "rounds: 2\nlocal_epochs: 1\nnum_groups: 2\nmodel: {name: mlp, hidden_sizes: [16]}\n"
            "erasure: {finish_rounds: 1}"  # FedEraser's replay, then one ordinary round
        )
        (tmp_path / "federation.yaml").write_text(config)
        params = FederationParams.model_validate(yaml.safe_load(config))
        holdout.to_csv(tmp_path / "holdout.csv", index=False)
        sites = [infra.Site(i, c, p) for i, (c, p) in enumerate(zip(CLIENTS, paths, strict=True))]
        (tmp_path / "sites.json").write_text(
            json.dumps(
                [
                    {"partition_id": i, "client_id": c, "data_path": str(p)}
                    for i, (c, p) in enumerate(zip(CLIENTS, paths, strict=True))
                ]
            )
        )
        argv = ["federation", "init", "--sites", str(tmp_path / "sites.json"), "--holdout"]
        argv += [str(tmp_path / "holdout.csv"), "--config", str(tmp_path / "federation.yaml")]
        done = subprocess.run(
            [sys.executable, "-m", "unlearn_ops.cli", *argv, "--num-classes", "10", "--json"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["groups"] == {"0": 2, "1": 2}
        deployment = infra.FlowerDeployment(tmp_path / "flower", sites, bin_dir=FLOWER_BIN)
        home = str(deployment.cli.home)
        try:
            deployment.start()
            print("start-up seconds:", deployment.startup_seconds)
            first = federated_train(str(root), home, str(FLOWER_BIN), "initial")
            yield Federation(ws, home, str(FLOWER_BIN), first, deployment, paths, params)
        finally:
            deployment.stop()
            assert deployment.alive() == []


def _withdraw(federation: Federation, client: str, request_id: str, method: str) -> str:
    from pipelines.federated import remove_client

    envelope = signed_withdrawal(client, request_id, SIGNING_KEY)
    return remove_client(
        str(federation.ws.root), envelope, federation.home, federation.flower_bin, method=method
    )


def _group_of(federation: Federation, client: str) -> int:
    state = json.loads((federation.ws.root / "federation" / "federation.json").read_text())
    client_hash = federation.ws.settings.hash_record_id(f"client:{client}")
    return next(c["group"] for c in state["clients"] if c["client_hash"] == client_hash)


def _fresh_group(federation: Federation, group: int, partitions: list[int]) -> str:
    """The group trained in this process, as a fresh federation of `partitions` would be."""
    from unlearn_ops.federated.averaging import federated_average
    from unlearn_ops.federated.client import initial_weights, local_update, weights_hash
    from unlearn_ops.federated.data import ClientData

    params = federation.params
    sites = []
    for partition in partitions:
        frame = _read_site(federation.paths[partition])
        # Copies: pandas hands out read-only arrays, which torch warns about.
        features = frame.drop(columns=["label"]).to_numpy(dtype=np.float32).copy()
        labels = frame["label"].to_numpy(dtype=np.int64).copy()
        sites.append(ClientData(CLIENTS[partition], features, labels))
    weights = initial_weights(params, sites[0].features.shape[1], 10, group_id=group)
    for round_number in range(params.rounds):
        results = [
            local_update(weights, site, params, num_classes=10, round_number=round_number)
            for site in sites
        ]
        weights = federated_average([(r.weights, r.num_examples) for r in results])
    return weights_hash(weights)


def test_a_withdrawn_client_leaves_the_champion_exactly(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The withdrawal reaches the inbox as an intake records it; the drain flow removes the
    client on the deployment that UNLEARN_OPS_FLOWER_HOME names."""
    from pipelines.intake import drain_inbox
    from unlearn_ops.deletion.receive import Accepted, receive

    ws, first = federation.ws, federation.first
    withdrawn = CLIENTS[1]
    envelope = signed_withdrawal(withdrawn, "withdraw-hospital", SIGNING_KEY)
    assert isinstance(receive(ws.inbox, envelope, source="http"), Accepted)
    monkeypatch.setenv("UNLEARN_OPS_FLOWER_HOME", federation.home)
    monkeypatch.setenv("UNLEARN_OPS_FLOWER_BIN", federation.flower_bin)
    drained = drain_inbox(str(ws.root))
    assert drained["failed"] == {}
    second = drained["withdrawals"]["withdraw-hospital"]
    [entry] = ws.inbox.entries()
    assert (entry.state, entry.outcome["version"]) == ("done", second)

    registry = ws.registry()
    assert registry.alias_version("champion") == second != first
    tags = registry.get_version(second).tags
    client_hash = ws.settings.hash_record_id(f"client:{withdrawn}")
    assert json.loads(tags["unlearn.clients_removed"]) == [client_hash]
    assert tags["unlearn.removal_method"] == "exact-group-retrain"
    assert tags["unlearn.provisional"] == "false"
    retrained = json.loads(tags["unlearn.shards_retrained"])
    assert retrained == [_group_of(federation, withdrawn)]
    # The other group's model is the one trained first, bit for bit.
    weights_before = json.loads(registry.get_version(first).tags["unlearn.weights"])
    weights_after = json.loads(tags["unlearn.weights"])
    kept = [g for g in weights_before if int(g) != retrained[0]]
    assert [weights_after[g] for g in kept] == [weights_before[g] for g in kept]
    assert weights_after[str(retrained[0])] != weights_before[str(retrained[0])]
    # Certificate: the retrained group is, bit for bit, a fresh federation without the
    # client (computed here, in another process, by the library the ClientApp calls).
    remaining = [
        i
        for i, c in enumerate(CLIENTS)
        if c != withdrawn and _group_of(federation, c) == retrained[0]
    ]
    assert weights_after[str(retrained[0])] == _fresh_group(federation, retrained[0], remaining)
    served = [e for e in ws.ledger.entries() if e.request_id == "withdraw-hospital"]
    assert [e.event for e in served] == ["received", "served"]
    assert served[-1].data["reason"] == "withdrawal"
    # Lineage: the version's revision holds the membership with the removal, tagged.
    sha = tags["unlearn.git_sha"]
    assert sha
    committed = json.loads(ws.lineage().read_git_file(sha, "federation/federation.json"))
    assert [r["client_hash"] for r in committed["removed"]] == [client_hash]
    assert ws.lineage().read_git_file("unlearn/forget/withdraw-hospital", "ledger.jsonl")
    history = subprocess.run(
        ["git", "-C", str(ws.root), "log", "-p", "--all"], capture_output=True, check=True
    ).stdout
    assert withdrawn.encode() not in history
    # The clear id is nowhere in the registry's store, the ledger or the inbox.
    stores = [
        ws.root / "mlflow.db",
        ws.root / "ledger.jsonl",
        *(ws.root / ".unlearn-ops").glob("inbox.sqlite*"),
        *(ws.root / "mlartifacts").rglob("*"),
    ]
    for path in stores:
        if path.is_file():
            assert withdrawn.encode() not in path.read_bytes(), path


# Runs after the exact removal above (tests run in file order): its certificate, through the
# CLI, is a fresh federation of the group on the deployment, equal bit for bit.
def test_the_exact_removal_is_certified_on_the_deployment(
    federation: Federation, cli: CliRunner
) -> None:
    ws = federation.ws
    champion = ws.registry().alias_version("champion")
    served = (ws.root / "federation" / "served.json").read_text()
    argv = ["federation", "certify", "champion", "--flower-home", federation.home]
    code, out, err = cli([*argv, "--flower-bin", federation.flower_bin, "-w", str(ws.root)])
    assert code == 0, err
    group = _group_of(federation, CLIENTS[1])
    assert f"group {group}: exact (1 clients, weights " in out
    assert f"exactness certificate for federated version {champion} PASSED" in out
    run = ws.root / "federation" / "runs" / f"certify-v{champion}"
    assert json.loads((run / "result.json").read_text())["groups"][str(group)]["partitions"] == [
        i for i, c in enumerate(CLIENTS) if c != CLIENTS[1] and _group_of(federation, c) == group
    ]
    assert (ws.root / "federation" / "served.json").read_text() == served
    assert ws.registry().alias_version("champion") == champion


# Runs after the exact removal above (tests run in file order), on the group it left alone.
def test_federaser_removes_a_client_of_the_other_group_provisionally(
    federation: Federation,
) -> None:
    ws = federation.ws
    untouched = _group_of(federation, CLIENTS[1])
    erased = next(c for c in CLIENTS if _group_of(federation, c) != untouched)
    before = json.loads(ws.registry().get_version("champion").tags["unlearn.weights"])
    version = _withdraw(federation, erased, "erase-hospital", "federaser")

    tags = ws.registry().get_version(version).tags
    assert ws.registry().alias_version("champion") == version
    assert tags["unlearn.removal_method"] == "federaser"
    assert tags["unlearn.provisional"] == "true"
    assert tags["unlearn.exact"] == "false"
    assert json.loads(tags["unlearn.approximate_requests"]) == ["erase-hospital"]
    assert ws.ledger.requests()["erase-hospital"].approximate  # the exact removal is due
    assert len(json.loads(tags["unlearn.clients_removed"])) == 2
    after = json.loads(tags["unlearn.weights"])
    assert after[str(untouched)] == before[str(untouched)]
    assert after[str(1 - untouched)] != before[str(1 - untouched)]
    # The replayed rounds 1 and 2, then the finishing round 3, which the version serves.
    served = json.loads((ws.root / "federation" / "served.json").read_text())["groups"]
    facts = served[str(1 - untouched)]
    assert (facts["method"], facts["final"]) == (
        "federaser",
        f"group-{1 - untouched:03d}/round-003.npz",
    )
    run = ws.root / "federation" / "runs" / facts["run"]
    assert sorted(p.name for p in (run / f"group-{1 - untouched:03d}").glob("round-*.npz")) == [
        "round-001.npz",
        "round-002.npz",
        "round-003.npz",
    ]


# Runs after the FedEraser removal above: the exact removal it owes, as the scheduled
# `remove-clients-exactly` deployment runs it, through the CLI.
def test_the_exact_removal_owed_after_federaser_supersedes_it(
    federation: Federation, cli: CliRunner
) -> None:
    ws = federation.ws
    provisional = ws.registry().alias_version("champion")
    argv = ["federation", "remove-exactly", "--flower-home", federation.home, "-w", str(ws.root)]
    code, out, err = cli([*argv, "--flower-bin", federation.flower_bin])
    assert code == 0, err
    version = ws.registry().alias_version("champion")
    assert version != provisional
    assert f"version {version} is champion: group(s) " in out
    assert "retrained exactly for erase-hospital" in out
    tags = ws.registry().get_version(version).tags
    assert (tags["unlearn.provisional"], tags["unlearn.removal_method"]) == (
        "false",
        "exact-group-retrain",
    )
    assert ws.registry().get_version(provisional).tags["unlearn.superseded_by"] == version
    assert not ws.ledger.requests()["erase-hospital"].approximate
    code, out, err = cli([*argv, "--flower-bin", federation.flower_bin])  # nothing owed now
    assert (code, out.strip()) == (0, "no client removal waits for an exact removal"), err
    assert ws.registry().alias_version("champion") == version


# Runs last on the deployment: retention ends for both removals.
def test_purge_deletes_every_version_and_run_folder_that_holds_a_removed_client(
    federation: Federation, cli: CliRunner
) -> None:
    ws = federation.ws
    champion = ws.registry().alias_version("champion")
    hashes = json.loads(ws.registry().get_version(champion).tags["unlearn.clients_removed"])
    removed = [
        i for i, c in enumerate(CLIENTS) if ws.settings.hash_record_id(f"client:{c}") in hashes
    ]
    assert len(removed) == 2
    later = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    code, out, err = cli(["purge", "--now", later, "-w", str(ws.root), "--json"])
    assert code == 0, err
    done = json.loads(out)["executed"]
    assert sorted(done["purged_requests"]) == ["erase-hospital", "withdraw-hospital"]
    # Every version before the last exact removal held a removed client.
    assert [v.version for v in ws.registry().versions()] == [champion]
    runs = ws.root / "federation" / "runs"
    assert "federation/runs/initial" in done["federation_folders"]
    assert not (runs / "initial").exists()
    assert not (runs / "remove-erase-hospital").exists()  # FedEraser's, rebuilt from history
    for partition in removed:
        assert not list(runs.rglob(f"partition-{partition:03d}.npz"))
    # The served model is untouched and still loads; the ledger says purged.
    served = json.loads((ws.root / "federation" / "served.json").read_text())["groups"]
    assert all((runs / facts["run"] / facts["final"]).is_file() for facts in served.values())
    states = ws.ledger.requests()
    assert states["erase-hospital"].purged
    assert states["withdraw-hospital"].purged
    code, out, err = cli(["purge", "--now", later, "-w", str(ws.root)])  # nothing left
    assert code == 0, err
    assert "deleted: versions none, 0 checkpoint(s)" in out


# Runs after the purge: the federation trained again, then champion rolled back through the
# CLI to the exact removal's version, whose group models purge kept.
def test_champion_rolls_back_to_the_earlier_federated_version_through_the_cli(
    federation: Federation, cli: CliRunner
) -> None:
    ws = federation.ws
    target = ws.registry().alias_version("champion")
    served = (ws.root / "federation" / "served.json").read_bytes()
    argv = ["federation", "train", "--flower-home", federation.home, "-w", str(ws.root)]
    code, _, err = cli([*argv, "--flower-bin", federation.flower_bin])
    assert code == 0, err
    retrained = ws.registry().alias_version("champion")
    assert retrained != target

    code, out, err = cli(["rollback", "--to", str(target), "-w", str(ws.root)])
    assert code == 0, err
    assert f"version {target} is champion again (version {retrained} is previous" in out
    assert ws.registry().alias_version("champion") == target
    assert (ws.root / "federation" / "served.json").read_bytes() == served
    from unlearn_ops.workflow.revisions import FEDERATION_FILES

    status = subprocess.run(
        ["git", "-C", str(ws.root), "status", "--porcelain", "--", *FEDERATION_FILES],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""  # the rollback is committed with the federation's bookkeeping


def test_a_deployment_without_the_flower_environment_says_how_to_get_it(tmp_path: Path) -> None:
    from unlearn_ops.errors import FederationError

    infra = _load_infra()
    deployment = infra.FlowerDeployment(tmp_path, [], bin_dir=tmp_path / "no-venv" / "bin")
    with pytest.raises(FederationError, match="run `make flower`"):
        deployment.start()
    assert deployment.alive() == []

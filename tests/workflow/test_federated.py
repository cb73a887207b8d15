"""The federation kept in a workspace: setup by keyed hash, plans, removal, registration,
the certificate.

The Flower deployment is replaced by an in-process runner of the same plan (a fake of
our own `FederationRunner` port, computing with the same library functions as the
ClientApp and the ServerApp); the registry is the in-memory fake. The real deployment is
tests/integration/test_flower_deployment.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest

from tests.conftest import signed_withdrawal
from tests.workflow.conftest import SETTINGS
from unlearn_ops.deletion.envelope import VerifiedRequest, sign_request, verify_request
from unlearn_ops.errors import FederationError, GateFailedError, InvalidRequestError
from unlearn_ops.federated.averaging import federated_average
from unlearn_ops.federated.client import initial_weights, local_update, weights_hash
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import ClientData
from unlearn_ops.params import Params
from unlearn_ops.serving.versions import VersionInfo
from unlearn_ops.settings import Settings
from unlearn_ops.testing import InMemoryLineage, InMemoryRegistry
from unlearn_ops.workflow import (
    federated,
    federated_holds,
    federated_provisional,
    federated_registration,
)
from unlearn_ops.workflow.federated_certificate import certify_federated_version
from unlearn_ops.workflow.workspace import Workspace, write_workspace_files

KEY = "federated-test-signing-key"
CLIENTS = [f"site-{i}" for i in range(4)]
PARAMS = FederationParams(
    rounds=2, local_epochs=1, num_groups=2, model={"name": "mlp", "hidden_sizes": [8]}
)


class InProcessRunner:
    """Runs a plan as the ServerApp would: groups in order, replies sorted by partition."""

    def __init__(self, sites: dict[int, ClientData]) -> None:
        self.sites = sites
        self.plans: list[dict[str, object]] = []

    def run_plan(self, plan_path: Path, log_path: Path) -> None:
        plan = json.loads(plan_path.read_text())
        self.plans.append(plan)
        params = FederationParams.model_validate(plan["params"])
        out = Path(plan["output_dir"])
        result: dict[str, dict[str, object]] = {}
        for group, partitions in sorted(plan["groups"].items(), key=lambda g: int(g[0])):
            weights = initial_weights(params, 6, 3, group_id=int(group))
            for round_number in range(params.rounds):
                replies = [
                    local_update(
                        weights,
                        self.sites[p],
                        params,
                        num_classes=3,
                        round_number=round_number,
                    )
                    for p in sorted(partitions)
                ]
                weights = federated_average([(r.weights, r.num_examples) for r in replies])
            final = f"group-{int(group):03d}/round-{params.rounds:03d}.npz"
            (out / final).parent.mkdir(parents=True, exist_ok=True)
            np.savez(out / final, *weights)
            result[group] = {
                # As the ServerApp reports it (this runner retrains for FedEraser too).
                "method": "federaser" if group in plan.get("history", {}) else "fedavg",
                "partitions": sorted(partitions),
                "rounds": params.rounds,
                "final": final,
                "weights_hash": weights_hash(weights),
            }
        (out / "result.json").write_text(json.dumps({"groups": result}))
        log_path.write_text("in-process\n")


def _site(index: int) -> ClientData:
    rng = np.random.default_rng(index)
    labels = rng.integers(0, 3, 40)
    features = (rng.normal(size=(40, 6)) + labels[:, None]).astype(np.float32)
    return ClientData(CLIENTS[index], features, labels.astype(np.int64))


@pytest.fixture
def federation(tmp_path: Path) -> tuple[Workspace, InProcessRunner]:
    write_workspace_files(
        tmp_path, Params.from_mapping({"registry": {"model_name": "federated-test"}})
    )
    settings = Settings(**{**SETTINGS.model_dump(), "request_signing_key": KEY})
    lineage = InMemoryLineage(tmp_path)
    lineage.init_repository()
    ws = Workspace.open(
        tmp_path, settings, registry=InMemoryRegistry("federated-test"), lineage=lineage
    )
    rng = np.random.default_rng(99)
    labels = rng.integers(0, 3, 60)
    holdout = pd.DataFrame(rng.normal(size=(60, 6)) + labels[:, None], columns=list("abcdef"))
    holdout["label"] = labels
    federated.setup_federation(
        ws,
        {c: i for i, c in enumerate(CLIENTS)},
        PARAMS,
        num_features=6,
        num_classes=3,
        holdout=holdout,
    )
    return ws, InProcessRunner({i: _site(i) for i in range(len(CLIENTS))})


def _withdrawal(ws: Workspace, client_id: str, request_id: str = "w1") -> VerifiedRequest:
    return verify_request(signed_withdrawal(client_id, request_id, KEY), ws.settings)


def _train(ws: Workspace, runner: InProcessRunner) -> str:
    federated.run_plan(ws, federated.plan_training(ws, "initial"), runner)
    return federated_registration.register_federated_version(ws, kind="train").version


Trained = tuple[Workspace, InProcessRunner, str]


@pytest.fixture
def trained(federation: tuple[Workspace, InProcessRunner]) -> Trained:
    """The federation once trained: its workspace, the runner and the version registered."""
    ws, runner = federation
    return ws, runner, _train(ws, runner)


class _Removal(NamedTuple):
    client_hash: str
    group: int
    result: dict[str, Any]
    version: VersionInfo


def _remove(
    ws: Workspace,
    runner: InProcessRunner,
    client_id: str,
    *,
    request_id: str = "w1",
    reason: str = "withdrawal",
    method: federated.RemovalMethod = "exact",
) -> _Removal:
    """Withdraw `client_id`, retrain its group without it, register the version.

    (This runner retrains the group for `federaser` too: the plan and tags are FedEraser's.)
    """
    client_hash = federated.receive_withdrawal(ws, _withdrawal(ws, client_id, request_id), reason)
    name = federated.fresh_run_name(ws, f"remove-{request_id}")  # as the flow names it
    group, plan = federated.plan_removal(ws, client_hash, name, method)
    result = federated.run_plan(ws, plan, runner)
    version = federated_registration.register_removal(
        ws, request_id, client_hash, group, reason, method
    )
    return _Removal(client_hash, group, result, version)


def test_the_federation_file_names_clients_by_keyed_hash_only(
    federation: tuple[Workspace, InProcessRunner],
) -> None:
    ws, _ = federation
    text = (ws.root / "federation" / "federation.json").read_text()
    state = json.loads(text)
    assert all(client not in text for client in CLIENTS)
    assert [c["client_hash"] for c in state["clients"]] == [
        ws.settings.hash_record_id(f"client:{c}") for c in CLIENTS
    ]
    assert sorted(c["group"] for c in state["clients"]) == [0, 0, 1, 1]


def test_removal_retrains_only_the_group_and_equals_a_federation_without_the_client(
    trained: Trained,
) -> None:
    ws, runner, first = trained
    client_hash, group, result, version = _remove(ws, runner, CLIENTS[2])
    # Only the client's group trained again, without partition 2.
    assert list(result["groups"]) == [str(group)]
    assert 2 not in result["groups"][str(group)]["partitions"]
    # Certificate: the retrained group is bit for bit a fresh federation of the rest.
    fresh = InProcessRunner(runner.sites)
    remaining = {str(group): result["groups"][str(group)]["partitions"]}
    (ws.root / "fresh").mkdir()
    plan_path = ws.root / "fresh" / "plan.json"
    plan_path.write_text(
        json.dumps({**runner.plans[-1], "output_dir": str(ws.root / "fresh"), "groups": remaining})
    )
    fresh.run_plan(plan_path, ws.root / "fresh" / "log")
    fresh_result = json.loads((ws.root / "fresh" / "result.json").read_text())
    registry = ws.registry()
    tags = registry.get_version(version.version).tags
    assert (
        json.loads(tags["unlearn.weights"])[str(group)]
        == (fresh_result["groups"][str(group)]["weights_hash"])
    )
    other = str(1 - group)
    assert (
        json.loads(tags["unlearn.weights"])[other]
        == json.loads(registry.get_version(first).tags["unlearn.weights"])[other]
    )
    assert registry.alias_version("champion") == version.version
    assert json.loads(tags["unlearn.clients_removed"]) == [client_hash]
    events = [(e.event, e.data.get("reason")) for e in ws.ledger.entries()]
    assert events == [("received", "withdrawal"), ("served", "withdrawal")]
    assert CLIENTS[2] not in (ws.root / "ledger.jsonl").read_text()


def test_a_removed_client_stays_out_of_later_trainings(
    trained: Trained,
) -> None:
    ws, runner, _ = trained
    _remove(ws, runner, CLIENTS[0], reason="poisoning")
    later = json.loads(federated.plan_training(ws, "later").read_text())
    assert 0 not in [p for ps in later["groups"].values() for p in ps]
    served = [e for e in ws.ledger.entries() if e.event == "served"]
    assert served[-1].data["reason"] == "poisoning"


def test_a_request_for_an_unknown_client_is_refused_and_records_nothing(
    federation: tuple[Workspace, InProcessRunner],
) -> None:
    ws, _ = federation
    with pytest.raises(InvalidRequestError, match="not in this federation"):
        federated.receive_withdrawal(ws, _withdrawal(ws, "site-99"), "withdrawal")
    assert list(ws.ledger.entries()) == []


def test_a_record_request_is_not_a_withdrawal(
    federation: tuple[Workspace, InProcessRunner],
) -> None:
    ws, _ = federation
    envelope = sign_request(
        {
            "request_id": "r1",
            "record_ids": ["7"],
            "reason": "x",
            "requested_at": datetime.now(UTC).isoformat(),
        },
        KEY,
    )
    with pytest.raises(InvalidRequestError, match="names no client"):
        federated.receive_withdrawal(ws, verify_request(envelope, ws.settings), "withdrawal")


def test_removing_the_last_client_of_a_group_is_refused(
    trained: Trained,
) -> None:
    ws, _, _ = trained
    state = json.loads((ws.root / "federation" / "federation.json").read_text())
    group0 = [c["client_hash"] for c in state["clients"] if c["group"] == 0]
    federated.plan_removal(ws, group0[0], "a")  # one left: allowed
    state["removed"] = [{"client_hash": group0[0]}]
    ws.write_json(ws.root / "federation" / "federation.json", state)
    with pytest.raises(FederationError, match="no client left"):
        federated.plan_removal(ws, group0[1], "b")


def test_a_candidate_that_loses_accuracy_is_not_promoted(
    trained: Trained,
) -> None:
    ws, _, first = trained
    registry = ws.registry()
    registry.set_version_tag(first, "accuracy", "1.5")  # an impossible bar
    with pytest.raises(GateFailedError):
        federated_registration.register_federated_version(ws, kind="train")
    assert registry.alias_version("champion") == first


def test_the_audit_shows_a_client_removal_beside_record_deletions(
    trained: Trained,
) -> None:
    from unlearn_ops.compliance.audit import audit_request, audit_requests
    from unlearn_ops.compliance.audit_text import describe_audit

    ws, runner, _ = trained
    client_hash, _group, _result, version = _remove(ws, runner, CLIENTS[3])
    (audit,) = audit_requests(ws)
    assert audit.client_hashes == (client_hash,)
    assert (audit.state, audit.served_version) == ("served", version.version)
    assert audit.first_honouring_version == version.version
    assert audit.to_dict()["received"]["client_hashes"] == [client_hash]
    text = "\n".join(describe_audit(audit))
    assert f"client removal: 1 federation client(s), keyed hash {client_hash[:16]}" in text
    assert CLIENTS[3] not in text
    assert "no records (a client withdrawal)" in text
    assert "applied: no data revision (the client's data stays at its site)" in text
    assert "privacy: no membership audit (the client's records stay at its site)" in text
    from unlearn_ops.errors import NotAForgetVersionError
    from unlearn_ops.workflow.membership_audit import audit_version

    with pytest.raises(NotAForgetVersionError, match=r"federated model.*federation certify"):
        audit_version(ws, version.version)
    # `audit --certify` does not try a SISA certificate; it says where this one runs.
    certified = audit_request(ws, audit.request_id, certify=True)
    assert certified.exactness is None
    assert (
        f"exactness: a client removal is certified on the Flower deployment: "
        f"`unlearn-ops federation certify {version.version} --flower-home HOME`"
    ) in describe_audit(certified)


def test_a_federaser_plan_names_the_stored_updates_and_its_version_is_provisional(
    trained: Trained,
) -> None:
    ws, _, _ = trained
    client_hash = federated.receive_withdrawal(ws, _withdrawal(ws, CLIENTS[1]), "withdrawal")
    group, plan_path = federated.plan_removal(ws, client_hash, "erase", "federaser")
    plan = json.loads(plan_path.read_text())
    history = ws.root / "federation" / "runs" / "initial" / f"group-{group:03d}"
    assert plan["history"] == {str(group): str(history)}
    assert 1 not in plan["groups"][str(group)]
    version = federated_registration.register_federated_version(
        ws,
        kind="forget",
        request_ids=("w1",),
        removed={client_hash: "withdrawal"},
        method=federated.METHOD_TAGS["federaser"],
    )
    assert version.tags["unlearn.provisional"] == "true"
    assert version.tags["unlearn.removal_method"] == "federaser"


def test_federaser_needs_a_group_served_by_a_training_run(
    trained: Trained,
) -> None:
    ws, _, _ = trained
    served = json.loads((ws.root / "federation" / "served.json").read_text())
    for facts in served["groups"].values():
        facts["method"] = "federaser"
    ws.write_json(ws.root / "federation" / "served.json", served)
    client_hash = federated.receive_withdrawal(ws, _withdrawal(ws, CLIENTS[1]), "withdrawal")
    with pytest.raises(FederationError, match="not served by a training run"):
        federated.plan_removal(ws, client_hash, "erase", "federaser")


def test_the_champion_keeps_honouring_earlier_withdrawals(
    trained: Trained,
) -> None:
    from unlearn_ops.compliance.audit import audit_requests

    ws, runner, _ = trained
    state = json.loads((ws.root / "federation" / "federation.json").read_text())
    group_of = dict(zip(CLIENTS, (c["group"] for c in state["clients"]), strict=True))
    other = next(c for c in CLIENTS if group_of[c] != group_of[CLIENTS[0]])
    for request_id, client in (("w1", CLIENTS[0]), ("w2", other)):
        _remove(ws, runner, client, request_id=request_id)
    champion = ws.registry().get_version("champion")
    assert champion.honoured_requests == ["w1", "w2"]
    assert len(json.loads(champion.tags["unlearn.clients_removed"])) == 2
    assert [a.champion_honours for a in audit_requests(ws)] == [True, True]


def test_the_certificate_of_an_exact_removal_passes_and_serves_nothing(
    trained: Trained,
) -> None:
    ws, runner, _ = trained
    _hash, group, result, version = _remove(ws, runner, CLIENTS[2])
    served = (ws.root / "federation" / "served.json").read_text()
    entries = len(list(ws.ledger.entries()))

    certificate = certify_federated_version(ws, "champion", runner)

    assert certificate.passed
    assert certificate.version == version.version
    [checked] = certificate.groups
    assert (checked.group, checked.clients) == (group, 1)
    assert checked.scratch_hash == json.loads(version.tags["unlearn.weights"])[str(group)]
    # A fresh federation of the group's clients less the removed one, and nothing else.
    assert runner.plans[-1]["groups"] == {str(group): result["groups"][str(group)]["partitions"]}
    assert certificate.run == f"certify-v{version.version}"
    # It serves nothing: served groups, champion and ledger as they were.
    assert (ws.root / "federation" / "served.json").read_text() == served
    assert ws.registry().alias_version("champion") == version.version
    assert len(list(ws.ledger.entries())) == entries
    again = certify_federated_version(ws, version.version, runner)
    assert again.run == f"certify-v{version.version}-2"
    assert again.to_dict()["groups"][0]["exact"] is True


def test_a_version_that_still_holds_a_removed_client_fails_its_certificate(
    trained: Trained,
) -> None:
    ws, runner, _ = trained
    client_hash = federated.receive_withdrawal(ws, _withdrawal(ws, CLIENTS[2]), "withdrawal")
    # A removal that claims the client but retrains the group with it still in.
    federated.run_plan(ws, federated.plan_training(ws, "not-removed"), runner)
    group = next(
        c["group"] for c in federated.read_state(ws)["clients"] if c["client_hash"] == client_hash
    )
    version = federated_registration.register_federated_version(
        ws,
        kind="forget",
        request_ids=("w1",),
        removed={client_hash: "withdrawal"},
        method="exact-group-retrain",
        groups_retrained=(group,),
    )
    certificate = certify_federated_version(ws, version.version, runner)
    assert not certificate.passed
    [checked] = certificate.groups
    assert checked.group == group
    assert checked.served_hash != checked.scratch_hash


def test_a_training_version_is_certified_over_every_group(trained: Trained) -> None:
    ws, runner, first = trained
    certificate = certify_federated_version(ws, first, runner)
    assert certificate.passed
    assert [(g.group, g.clients) for g in certificate.groups] == [(0, 2), (1, 2)]
    assert [g.group for g in certify_federated_version(ws, first, runner, [1]).groups] == [1]


def test_what_cannot_be_certified_is_refused_before_anything_runs(trained: Trained) -> None:
    from unlearn_ops.errors import VersionNotFoundError
    from unlearn_ops.workflow.certification import certify_version

    ws, runner, first = trained
    with pytest.raises(FederationError, match=r"serves no group 5; its groups are \[0, 1\]"):
        certify_federated_version(ws, first, runner, [5])
    with pytest.raises(VersionNotFoundError):
        certify_federated_version(ws, "42", runner)
    with pytest.raises(FederationError, match=r"federated model.*federation certify 1"):
        certify_version(ws, first)  # `unlearn-ops verify` points to the federated one
    # After a removal, the first version held that client's data: its site has left.
    _remove(ws, runner, CLIENTS[0])
    with pytest.raises(FederationError, match=r"1 client\(s\) removed since"):
        certify_federated_version(ws, first, runner)
    group_of = {c["client_hash"]: c["group"] for c in federated.read_state(ws)["clients"]}
    hashes = {c: ws.settings.hash_record_id(f"client:{c}") for c in CLIENTS}
    other = next(c for c in CLIENTS if group_of[hashes[c]] != group_of[hashes[CLIENTS[0]]])
    provisional = _remove(ws, runner, other, request_id="w2", method="federaser").version
    with pytest.raises(FederationError, match=r"provisional \(federaser\).*no exactness"):
        certify_federated_version(ws, provisional.version, runner)
    assert len(runner.plans) == 3  # the training and two removals: no certificate ran


@pytest.mark.flows  # the stage's Prefect tasks, called outside a flow, start Prefect's server
def test_a_withdrawal_from_the_inbox_removes_the_client_through_the_drain(
    trained: Trained,
) -> None:
    """The drain's withdrawal stage (pipelines/federated.py) on this runner: the same
    removal as `federation remove`, from a request an intake recorded."""
    from pipelines.federated import withdrawal_stage
    from unlearn_ops.deletion.drain import drain
    from unlearn_ops.deletion.receive import Accepted, receive

    ws, runner, first = trained
    envelope = signed_withdrawal(CLIENTS[2], "withdraw-inbox", KEY)
    assert isinstance(receive(ws.inbox, envelope, source="test"), Accepted)

    def no_records(ws: Workspace, batch: object) -> dict[str, Any]:
        raise AssertionError("a withdrawal is not a record batch")

    result = drain(ws, no_records, run="run-w", withdraw=withdrawal_stage(runner))

    version = result["withdrawals"]["withdraw-inbox"]
    assert ws.registry().alias_version("champion") == version != first
    tags = ws.registry().get_version(version).tags
    client_hash = ws.settings.hash_record_id(f"client:{CLIENTS[2]}")
    assert json.loads(tags["unlearn.clients_removed"]) == [client_hash]
    assert tags["unlearn.removal_method"] == "exact-group-retrain"
    assert [e.event for e in ws.ledger.entries()] == ["received", "served"]
    [entry] = ws.inbox.entries()
    assert (entry.state, entry.outcome) == (
        "done",
        {"version": version, "run": "run-w", "method": "exact"},
    )
    assert CLIENTS[2] not in (ws.root / "ledger.jsonl").read_text()
    # The retrained group is the one a `federation remove` would have given.
    assert runner.plans[-1]["groups"] == {
        str(c["group"]): [
            int(o["partition_id"])
            for o in federated.read_state(ws)["clients"]
            if o["group"] == c["group"] and o["client_hash"] != client_hash
        ]
        for c in federated.read_state(ws)["clients"]
        if c["client_hash"] == client_hash
    }


def test_a_removal_is_a_revision_of_the_federation_tagged_with_its_request(
    trained: Trained,
) -> None:
    """The lineage: the version's git_sha is a revision holding the membership with the
    removal, the served groups and the ledger; the request's tag points at it."""
    ws, runner, first = trained
    client_hash, group, _result, version = _remove(ws, runner, CLIENTS[2], request_id="w9")
    lineage = ws.lineage()
    sha = version.tag("git_sha")
    assert sha
    assert sha != ws.registry().get_version(first).tag("git_sha")
    state = json.loads(lineage.read_git_file(sha, "federation/federation.json"))
    assert [r["client_hash"] for r in state["removed"]] == [client_hash]
    served = json.loads(lineage.read_git_file("unlearn/forget/w9", "federation/served.json"))
    assert served["groups"][str(group)]["run"] == "remove-w9"
    assert '"received"' in lineage.read_git_file(sha, "ledger.jsonl")
    assert CLIENTS[2] not in lineage.read_git_file(sha, "ledger.jsonl")
    before = json.loads(
        lineage.read_git_file(lineage.parent_commit(sha) or "", "federation/federation.json")
    )
    assert before["removed"] == []


def test_a_workspace_without_history_is_refused_before_the_run(
    federation: tuple[Workspace, InProcessRunner],
) -> None:
    ws, runner = federation
    bare = Workspace.open(
        ws.root, ws.settings, registry=ws.registry(), lineage=InMemoryLineage(ws.root)
    )
    with pytest.raises(FederationError, match=r"keeps no history.*unlearn-ops init"):
        federated.plan_training(bare, "initial")
    assert runner.plans == []
    assert not (ws.root / "federation" / "runs" / "initial").exists()


@pytest.mark.flows  # the stage's Prefect tasks, called outside a flow, start Prefect's server
def test_a_withdrawal_failed_for_want_of_a_deployment_is_received_when_retried(
    trained: Trained,
) -> None:
    """Refused first (no deployment: `failed` in the ledger, never `received`), then retried
    with one: the ledger shows it received before it was served."""
    from pipelines.federated import withdrawal_stage
    from unlearn_ops.deletion.drain import drain
    from unlearn_ops.deletion.receive import receive

    ws, runner, _ = trained
    receive(ws.inbox, signed_withdrawal(CLIENTS[1], "w-retry", KEY), source="test")

    def no_records(ws: Workspace, batch: object) -> dict[str, Any]:
        raise AssertionError("a withdrawal is not a record batch")

    assert "w-retry" in drain(ws, no_records)["failed"]
    ws.inbox.retry("w-retry")
    assert "w-retry" in drain(ws, no_records, withdraw=withdrawal_stage(runner))["withdrawals"]
    events = [e.event for e in ws.ledger.entries() if e.request_id == "w-retry"]
    assert events == ["failed", "received", "served"]


def test_a_withdrawal_received_again_is_recorded_once(trained: Trained) -> None:
    ws, _, _ = trained
    for _attempt in range(2):  # a retry after a failed run receives it again
        federated.receive_withdrawal(ws, _withdrawal(ws, CLIENTS[1], "w-twice"), "withdrawal")
    assert [e.event for e in ws.ledger.entries()] == ["received"]


# ------------------------------------------------------------------ approval of withdrawals
def _with_params(ws: Workspace, section: str, value: dict[str, Any]) -> Workspace:
    """The workspace again, its params.yaml given this section (approval rules...)."""
    import yaml

    params = yaml.safe_load((ws.root / "params.yaml").read_text())
    params[section] = value
    (ws.root / "params.yaml").write_text(yaml.safe_dump(params))
    return Workspace.open(ws.root, ws.settings, registry=ws.registry(), lineage=ws.lineage())


def test_the_inbox_removes_by_federaser_where_the_params_say_so_and_the_group_allows(
    trained: Trained,
) -> None:
    ws, runner, _ = trained
    client_hash = ws.settings.hash_record_id(f"client:{CLIENTS[1]}")
    assert federated_provisional.inbox_removal_method(ws, client_hash) == ("exact", "")
    ws = _with_params(ws, "unlearning", {"withdrawals": "federaser"})
    assert federated_provisional.inbox_removal_method(ws, client_hash) == ("federaser", "")
    erased = _remove(ws, runner, CLIENTS[1], request_id="w1", method="federaser")
    mate = next(c for c in CLIENTS if c != CLIENTS[1] and _group_of(ws, c) == erased.group)
    # Its group is now served by the erasure: FedEraser cannot run again there.
    assert federated_provisional.inbox_removal_method(
        ws, ws.settings.hash_record_id(f"client:{mate}")
    ) == (
        "exact",
        f"removed exactly: group {erased.group} is not served by a training run with "
        "stored updates",
    )


@pytest.mark.flows  # the stage's Prefect tasks, called outside a flow, start Prefect's server
def test_a_withdrawal_from_the_inbox_is_erased_provisionally_when_the_params_say_so(
    trained: Trained,
) -> None:
    from pipelines.federated import withdrawal_stage
    from unlearn_ops.deletion.drain import drain
    from unlearn_ops.deletion.receive import receive

    ws, runner, _ = trained
    ws = _with_params(ws, "unlearning", {"withdrawals": "federaser"})
    receive(ws.inbox, signed_withdrawal(CLIENTS[2], "w-fast", KEY), source="test")
    version = drain(ws, _no_records, withdraw=withdrawal_stage(runner))["withdrawals"]["w-fast"]
    tags = ws.registry().get_version(version).tags
    assert (tags["unlearn.removal_method"], tags["unlearn.provisional"]) == ("federaser", "true")
    assert "history" in runner.plans[-1]  # FedEraser's plan names the stored updates
    assert ws.inbox.get("w-fast").outcome["method"] == "federaser"  # type: ignore[union-attr]
    assert ws.ledger.requests()["w-fast"].approximate
    assert [p.request_id for p in federated_provisional.pending_exact_removals(ws)] == ["w-fast"]


def _with_approval(ws: Workspace, approval: dict[str, Any]) -> Workspace:
    """The workspace again, its params.yaml given these approval rules."""
    return _with_params(ws, "approval", approval)


def _library_withdrawals(runner: InProcessRunner) -> Any:
    """The drain's withdrawal stage from library calls alone (no Prefect task)."""

    def withdraw(ws: Workspace, entry: Any) -> dict[str, Any]:
        federated_holds.receive_unless_held(
            ws, entry.request_id, entry.client_hash, "withdrawal", entry.authenticated_by
        )
        group, plan = federated.plan_removal(ws, entry.client_hash, f"remove-{entry.request_id}")
        federated.run_plan(ws, plan, runner)
        registered = federated_registration.register_removal(
            ws, entry.request_id, entry.client_hash, group
        )
        return {"version": registered.version}

    return withdraw


class _Person:
    def __init__(self, *answers: tuple[bool, str, str]) -> None:
        self.answers = list(answers)
        self.forms: list[str] = []
        self.summaries: list[dict[str, Any]] = []

    def __call__(self, ws: Workspace, summary: Any, form: str) -> tuple[bool, str, str]:
        self.summaries.append(dict(summary))
        self.forms.append(form)
        return self.answers.pop(0)


def _no_records(ws: Workspace, batch: object) -> dict[str, Any]:
    raise AssertionError("a withdrawal is not a record batch")


def test_the_withdrawal_summary_names_the_group_and_its_share_of_a_retrain(
    trained: Trained,
) -> None:
    from unlearn_ops.deletion.approval import withdrawal_markdown, withdrawal_summary
    from unlearn_ops.deletion.receive import receive

    ws, _, _ = trained
    receive(ws.inbox, signed_withdrawal(CLIENTS[2], "w-sum", KEY), source="test")
    [entry] = ws.inbox.entries()
    summary = withdrawal_summary(ws, entry)
    state = federated.read_state(ws)
    group = next(c["group"] for c in state["clients"] if c["client_hash"] == entry.client_hash)
    mates = [c for c in state["clients"] if c["group"] == group]
    assert summary["groups"] == [group]
    assert summary["clients_retraining"] == len(mates) - 1
    assert summary["retraining_fraction"] == round((len(mates) - 1) / (len(CLIENTS) - 1), 4)
    assert summary["records"] is None
    assert summary["method"] == "exact"
    form = withdrawal_markdown(summary, entry.reason, "withdrawals")
    assert f"Group to retrain: {group}" in form
    assert "Method: exact" in form
    assert "Asked by the rule: withdrawals" in form
    assert CLIENTS[2] not in form  # the keyed hash only

    # Where the drain would use FedEraser, the form says so and costs it in client-epochs.
    ws = _with_params(ws, "unlearning", {"withdrawals": "federaser"})
    erase = withdrawal_summary(ws, entry)
    params = FederationParams.model_validate(state["params"])
    assert (erase["method"], erase["groups"]) == ("federaser", [group])
    assert erase["retraining_fraction"] == round(
        (len(mates) - 1) / (len(CLIENTS) - 1) * params.erasure_cost(), 4
    )
    form = withdrawal_markdown(erase, entry.reason, "withdrawals")
    assert f"Group to rebuild: {group}, by FedEraser" in form
    assert "Method: FedEraser (approximate" in form
    assert "Method: exact" not in form


def test_federasers_cost_is_its_client_epochs_over_a_retrains() -> None:
    params = FederationParams(
        rounds=20,
        local_epochs=3,
        erasure={"interval": 2, "calibration_epochs": 2, "finish_rounds": 1},
    )
    # 10 retained rounds x 2 epochs + 1 finishing round x 3 = 23 of 60 (the benchmark's 184/480).
    assert params.erasure_cost() == pytest.approx(23 / 60)
    assert FederationParams(rounds=5, local_epochs=2).erasure_cost() == pytest.approx(5 / 10)
    odd = FederationParams(rounds=5, local_epochs=1, erasure={"interval": 2})
    assert odd.erasure_cost() == pytest.approx(3 / 5)  # rounds 0, 2 and 4 retained


def test_an_approval_rule_asks_before_a_withdrawal_and_a_rejection_changes_nothing(
    trained: Trained,
) -> None:
    from unlearn_ops.deletion.drain import drain
    from unlearn_ops.deletion.receive import receive

    ws, runner, first = trained
    ws = _with_approval(
        ws, {"rules": [{"name": "withdrawals", "when": {"withdrawal": True}, "then": "ask"}]}
    )
    receive(ws.inbox, signed_withdrawal(CLIENTS[1], "w-ask", KEY), source="test")
    state_before = (ws.root / "federation" / "federation.json").read_bytes()
    plans_before = len(runner.plans)
    person = _Person((False, "site under audit", "Dana DPO"), (True, "audit closed", "Dana DPO"))

    result = drain(ws, _no_records, withdraw=_library_withdrawals(runner), approver=person)

    why = "rejected by Dana DPO: site under audit"
    assert result["failed"] == {"w-ask": why}
    assert result["withdrawals"] == {}
    assert len(runner.plans) == plans_before  # no group retrained
    assert (ws.root / "federation" / "federation.json").read_bytes() == state_before
    assert ws.registry().alias_version("champion") == first
    assert ws.inbox.get("w-ask").state == "failed"  # type: ignore[union-attr]
    [failed] = [e for e in ws.ledger.entries() if e.request_id == "w-ask"]
    assert failed.event == "failed"
    facts = failed.data["approval"]
    assert (facts["decision"], facts["rule"]) == ("rejected", "withdrawals")
    assert (facts["approver"], facts["reason"]) == ("Dana DPO", "site under audit")
    assert "Remove federation client" in person.forms[0]
    assert CLIENTS[1] not in person.forms[0]

    ws.inbox.retry("w-ask")
    result = drain(ws, _no_records, withdraw=_library_withdrawals(runner), approver=person)
    version = result["withdrawals"]["w-ask"]
    tags = ws.registry().get_version(version).tags
    assert tags["unlearn.approval.decision"] == "approved"
    assert tags["unlearn.approval.rule"] == "withdrawals"
    assert tags["unlearn.approval.approver"] == "Dana DPO"
    [approval] = [
        e.data for e in ws.ledger.entries() if e.request_id == "w-ask" and e.event == "approval"
    ]
    assert approval["groups"] == person.summaries[1]["groups"]
    assert approval["reason"] == "audit closed"
    assert CLIENTS[1] not in (ws.root / "ledger.jsonl").read_text()


def test_record_rules_do_not_decide_a_withdrawal_and_nobody_is_asked_without_a_deployment(
    trained: Trained,
) -> None:
    from unlearn_ops.deletion.drain import NO_DEPLOYMENT, drain
    from unlearn_ops.deletion.receive import receive

    ws, runner, _ = trained
    # "small record batches pass": a withdrawal names no record, so the default decides.
    ws = _with_approval(
        ws,
        {"rules": [{"name": "small", "when": {"max_records": 10}, "then": "auto"}]}
        | {"default": "ask"},
    )
    receive(ws.inbox, signed_withdrawal(CLIENTS[3], "w-default", KEY), source="test")
    person = _Person((True, "", "Ola"))
    assert drain(ws, _no_records, approver=person)["failed"] == {"w-default": NO_DEPLOYMENT}
    assert person.forms == []  # nothing to approve where nothing can run
    ws.inbox.retry("w-default")
    drain(ws, _no_records, withdraw=_library_withdrawals(runner), approver=person)
    [approval] = [
        e.data for e in ws.ledger.entries() if e.request_id == "w-default" and e.event == "approval"
    ]
    assert (approval["decision"], approval["rule"], approval["approver"]) == (
        "approved",
        "default",
        "Ola",
    )


# ------------------------------------------------------------------ legal holds on a site
def test_a_hold_names_an_active_site_by_keyed_hash_and_refuses_any_other(
    trained: Trained,
) -> None:
    from unlearn_ops.deletion.holds import fold_holds, place_hold

    ws, runner, _ = trained
    hold = place_hold(ws, client=CLIENTS[1], reason="litigation 2026-17", actor="Dana DPO")
    assert hold.client_hash == ws.settings.hash_record_id(f"client:{CLIENTS[1]}")
    assert (hold.record_hashes, hold.subject_hash) == ((), None)
    assert hold.to_dict()["client"] is True
    assert fold_holds(ws.ledger.entries())[hold.hold_id] == hold
    assert CLIENTS[1] not in (ws.root / "ledger.jsonl").read_text()

    ledger = (ws.root / "ledger.jsonl").read_bytes()
    with pytest.raises(InvalidRequestError, match="no such client in the federation"):
        place_hold(ws, client="site-99", reason="litigation")
    assert (ws.root / "ledger.jsonl").read_bytes() == ledger
    other = next(c for c in CLIENTS if _group_of(ws, c) != _group_of(ws, CLIENTS[1]))
    _remove(ws, runner, other, request_id="w-left")
    with pytest.raises(InvalidRequestError, match="has left the federation"):
        place_hold(ws, client=other, reason="litigation")


def test_a_withdrawal_of_a_held_site_waits_in_the_inbox_until_the_hold_is_released(
    trained: Trained,
) -> None:
    from unlearn_ops.deletion.drain import drain
    from unlearn_ops.deletion.holds import place_hold, release_hold
    from unlearn_ops.deletion.receive import receive

    ws, runner, first = trained
    held_site = CLIENTS[1]
    free_site = next(c for c in CLIENTS if _group_of(ws, c) != _group_of(ws, held_site))
    hold = place_hold(ws, client=held_site, reason="litigation 2026-17", actor="Dana DPO")
    receive(ws.inbox, signed_withdrawal(held_site, "w-held", KEY), source="test")
    receive(ws.inbox, signed_withdrawal(free_site, "w-free", KEY), source="test")
    plans = len(runner.plans)
    person = _Person()  # asked by no rule: a held withdrawal reaches nobody

    result = drain(ws, _no_records, withdraw=_library_withdrawals(runner), approver=person)

    assert result["held"] == {"w-held": f"{hold.hold_id}: litigation 2026-17"}
    assert list(result["withdrawals"]) == ["w-free"]
    assert len(runner.plans) == plans + 1  # the free site's group only
    entry = ws.inbox.get("w-held")
    assert entry is not None
    assert entry.state == "held"
    assert entry.outcome == {"reason": f"under legal hold: {hold.hold_id}: litigation 2026-17"}
    state = ws.ledger.request("w-held")
    assert state is not None
    assert (state.state, state.holds[-1]["holds"]) == ("held", [hold.hold_id])
    assert state.received_at  # its clock started, and is paused while the hold stands
    held_hash = ws.settings.hash_record_id(f"client:{held_site}")
    assert held_hash in {
        c["client_hash"] for c in federated.active_clients(federated.read_state(ws))
    }
    # Drained again while the hold stands: nothing happens, nothing is written.
    entries = len(list(ws.ledger.entries()))
    again = drain(ws, _no_records, withdraw=_library_withdrawals(runner))
    assert (again["withdrawals"], len(list(ws.ledger.entries()))) == ({}, entries)

    released = release_hold(ws, hold.hold_id, reason="case closed", actor="Dana DPO")
    assert released.queued == ["w-held"]
    version = drain(ws, _no_records, withdraw=_library_withdrawals(runner))["withdrawals"]["w-held"]
    tags = ws.registry().get_version(version).tags
    assert held_hash in json.loads(tags["unlearn.clients_removed"])
    assert ws.registry().alias_version("champion") == version != first
    assert ws.ledger.request("w-held").state == "served"  # type: ignore[union-attr]


def test_a_direct_withdrawal_of_a_held_site_is_refused_and_named_again_on_release(
    trained: Trained,
) -> None:
    from unlearn_ops.deletion.holds import place_hold, release_hold
    from unlearn_ops.errors import HoldError

    ws, _, first = trained
    client_hash = ws.settings.hash_record_id(f"client:{CLIENTS[1]}")
    hold = place_hold(ws, client=CLIENTS[1], reason="litigation", actor="Dana DPO")
    membership = (ws.root / "federation" / "federation.json").read_bytes()
    with pytest.raises(HoldError, match=r"w-direct withdraws a site under legal hold \(hold-"):
        federated_holds.receive_unless_held(ws, "w-direct", client_hash, "withdrawal", "test")
    assert ws.ledger.request("w-direct").state == "held"  # type: ignore[union-attr]
    assert (ws.root / "federation" / "federation.json").read_bytes() == membership
    assert ws.registry().alias_version("champion") == first
    # Not the inbox's: the release names it, to be run again.
    assert release_hold(ws, hold.hold_id, reason="case closed").rerun == ["w-direct"]

    # An expulsion for poisoning protects the model: a hold does not stop it.
    place_hold(ws, client=CLIENTS[1], reason="litigation", actor="Dana DPO")
    federated_holds.receive_unless_held(ws, "p-1", client_hash, "poisoning", "monitor")
    assert ws.ledger.request("p-1").state == "received"  # type: ignore[union-attr]


# ------------------------------------------------------------------ FedEraser is provisional
def test_a_federaser_removal_is_provisional_until_the_exact_removal_supersedes_it(
    trained: Trained,
) -> None:
    from unlearn_ops.compliance.audit import audit_request
    from unlearn_ops.compliance.audit_text import describe_audit

    ws, runner, _ = trained
    erased = _remove(ws, runner, CLIENTS[1], request_id="w1", method="federaser")
    tags = erased.version.tags
    assert (tags["unlearn.exact"], tags["unlearn.provisional"]) == ("false", "true")
    assert tags["unlearn.method"] == "federaser"
    assert json.loads(tags["unlearn.approximate_requests"]) == ["w1"]
    served = [e for e in ws.ledger.entries() if e.request_id == "w1" and e.event == "served"]
    assert served[-1].data["approximate"] is True
    assert served[-1].data["exact_due"]
    audit = audit_request(ws, "w1")
    assert audit.approximate is not None
    assert audit.approximate["version"] == erased.version.version
    assert audit.first_exact_version is None
    text = "\n".join(describe_audit(audit))
    assert "served: APPROXIMATELY by provisional version" in text
    assert "the exact removal is not served yet (`unlearn-ops federation remove-exactly`)" in text
    assert "exactness: not run (no version honours it exactly yet: the exact removal" in text
    assert "federation certify" not in text  # a FedEraser version has no certificate

    exact = _remove(ws, runner, CLIENTS[1], request_id="w1", method="exact")
    assert exact.version.tags["unlearn.provisional"] == "false"
    assert "unlearn.approximate_requests" not in exact.version.tags
    replaced = ws.registry().get_version(erased.version.version)
    assert replaced.tags["unlearn.superseded_by"] == exact.version.version
    audit = audit_request(ws, "w1")
    assert audit.approximate is None
    assert audit.first_exact_version == exact.version.version
    assert audit.served_version == exact.version.version
    assert (
        f"`unlearn-ops federation certify {exact.version.version} --flower-home HOME`"
        in "\n".join(describe_audit(audit))
    )
    [removal] = federated.read_state(ws)["removed"]  # one client, removed once
    assert removal["method"] == "exact-group-retrain"


def test_an_exact_removal_in_another_group_keeps_the_erased_group_provisional(
    trained: Trained,
) -> None:
    ws, runner, _ = trained
    erased = _remove(ws, runner, CLIENTS[1], request_id="w1", method="federaser")
    other = next(c for c in CLIENTS if c != CLIENTS[1] and _group_of(ws, c) != erased.group)
    exact = _remove(ws, runner, other, request_id="w2", method="exact")
    tags = exact.version.tags
    assert tags["unlearn.provisional"] == "true"  # it still serves FedEraser's group
    assert json.loads(tags["unlearn.approximate_requests"]) == ["w1"]
    assert "unlearn.superseded_by" not in ws.registry().get_version(erased.version.version).tags
    states = ws.ledger.requests()
    assert states["w1"].approximate
    assert not states["w2"].approximate

    federated.run_plan(ws, federated.plan_training(ws), runner)  # every group afresh
    trained_again = federated_registration.register_federated_version(ws, kind="train")
    assert trained_again.tags["unlearn.provisional"] == "false"
    for version in (erased.version.version, exact.version.version):
        tags = ws.registry().get_version(version).tags
        assert tags["unlearn.superseded_by"] == trained_again.version
    assert not ws.ledger.requests()["w1"].approximate


def test_the_exact_removals_owed_after_federaser_are_one_per_erased_group(
    trained: Trained,
) -> None:
    from unlearn_ops.workflow.approx_versions import nothing_to_retrain, pending_exact_requests

    ws, runner, _ = trained
    assert federated_provisional.pending_exact_removals(ws) == []
    erased = _remove(ws, runner, CLIENTS[1], request_id="w1", method="federaser")
    other = next(c for c in CLIENTS if c != CLIENTS[1] and _group_of(ws, c) != erased.group)
    _remove(ws, runner, other, request_id="w2", method="exact")  # served exactly: not owed
    owed = federated_provisional.pending_exact_removals(ws)
    assert owed == [
        federated_provisional.PendingRemoval(
            "w1", erased.client_hash, erased.group, "withdrawal", ("w1",)
        )
    ]
    # The monolithic retrain has nothing to do here, and says where the removal waits.
    assert pending_exact_requests(ws, clients=False) == []
    assert pending_exact_requests(ws, clients=True) == ["w1"]
    assert "unlearn-ops federation remove-exactly" in nothing_to_retrain(ws)

    # What the remove-clients-exactly flow does for each: the group retrained exactly.
    [pending] = owed
    group, plan = federated.plan_removal(ws, pending.client_hash, "remove-w1-2", "exact")
    assert group == erased.group
    federated.run_plan(ws, plan, runner)
    exact = federated_registration.register_removal(
        ws, pending.request_id, pending.client_hash, group, pending.reason, "exact"
    )
    assert federated_provisional.pending_exact_removals(ws) == []
    assert nothing_to_retrain(ws) == "no request waits for an exact retrain"
    assert exact.tags["unlearn.provisional"] == "false"
    replaced = ws.registry().get_version(erased.version.version)
    assert replaced.tags["unlearn.superseded_by"] == exact.version


def test_retention_finds_the_run_folders_that_hold_a_removed_client(trained: Trained) -> None:
    from unlearn_ops.workflow.federated_retention import folders_holding_removed_clients

    ws, runner, _ = trained
    erased = _remove(ws, runner, CLIENTS[1], request_id="w1", method="federaser")
    untouched = 1 - erased.group
    assert federated.served_groups(ws)[str(untouched)]["run"] == "initial"
    # While the FedEraser version is served, its run and the history stay.
    served = {g: f["run"] for g, f in federated.served_groups(ws).items()}
    assert folders_holding_removed_clients(ws, ["w1"], [served]) == [
        f"federation/runs/initial/group-{erased.group:03d}"
    ]
    exact = _remove(ws, runner, CLIENTS[1], request_id="w1", method="exact")
    served = {g: f["run"] for g, f in federated.served_groups(ws).items()}
    runs = json.loads(exact.version.tags["unlearn.federation.runs"])
    assert runs == served == {str(untouched): "initial", str(erased.group): "remove-w1-2"}
    # The training's group of the client, and the whole FedEraser run, go; the other
    # group of the training (still served) and the exact removal's run stay.
    assert folders_holding_removed_clients(ws, ["w1"], [served, runs]) == [
        f"federation/runs/initial/group-{erased.group:03d}",
        "federation/runs/remove-w1",
    ]
    # A model kept by a version keeps its folder; an unrelated request removes nothing.
    kept = {str(erased.group): "remove-w1"}
    assert "federation/runs/remove-w1" not in folders_holding_removed_clients(
        ws, ["w1"], [served, kept]
    )
    assert folders_holding_removed_clients(ws, ["r-other"], [served]) == []


def _group_of(ws: Workspace, client_id: str) -> int:
    client_hash = ws.settings.hash_record_id(f"client:{client_id}")
    state = federated.read_state(ws)
    return int(next(c["group"] for c in state["clients"] if c["client_hash"] == client_hash))


def test_no_rollback_serves_a_version_that_still_holds_a_removed_client(
    trained: Trained,
) -> None:
    from unlearn_ops.errors import RollbackError, UnsafeVersionError
    from unlearn_ops.serving.promotion import promote
    from unlearn_ops.workflow.rollback import plan_rollback, unsafe_versions

    ws, runner, first = trained
    erased = _remove(ws, runner, CLIENTS[1], request_id="w1", method="federaser")
    exact = _remove(ws, runner, CLIENTS[1], request_id="w1", method="exact")
    # The training run and the superseded FedEraser version both hold the client.
    assert unsafe_versions(ws) == {first: ["w1"], erased.version.version: ["w1"]}
    for target in (first, erased.version.version):
        with pytest.raises(RollbackError, match="does not honour w1, and a federation is not"):
            plan_rollback(ws, target)
    with pytest.raises(RollbackError, match="a federation is not replayed here"):
        plan_rollback(ws, first, replay=True)
    with pytest.raises(UnsafeVersionError, match="w1"):  # the one rule of promotion, too
        promote(ws, ws.registry().get_version(first), [])
    assert ws.registry().alias_version("champion") == exact.version.version


def _retrained(ws: Workspace, runner: InProcessRunner) -> str:
    """The federation trained again with its current members: a new champion."""
    federated.run_plan(ws, federated.plan_training(ws), runner)
    return federated_registration.register_federated_version(ws, kind="train").version


def test_champion_rolls_back_to_an_earlier_federated_version_that_honours_every_removal(
    trained: Trained,
) -> None:
    from unlearn_ops.serving.promotion import promote
    from unlearn_ops.workflow.rollback import plan_rollback, record_rollback, restore_version

    ws, runner, _ = trained
    removed = _remove(ws, runner, CLIENTS[1], request_id="w1")
    target = removed.version.version
    served_then = (ws.root / "federation" / "served.json").read_bytes()
    later = _retrained(ws, runner)
    assert (ws.root / "federation" / "served.json").read_bytes() != served_then

    plan = plan_rollback(ws, target)
    assert (plan.action, plan.missing, plan.champion) == ("move", (), later)
    assert "honours every deletion and client removal" in plan.message
    membership = (ws.root / "federation" / "federation.json").read_bytes()
    ws = restore_version(ws, plan)
    sha = record_rollback(ws, plan)
    promote(ws, plan.target, [])

    assert ws.registry().alias_version("champion") == target
    assert ws.registry().alias_version("previous") == later
    assert (ws.root / "federation" / "served.json").read_bytes() == served_then
    assert (ws.root / "federation" / "federation.json").read_bytes() == membership
    assert ws.lineage().read_git_file(sha, "federation/served.json").encode() == served_then
    # The next removal starts from the groups the champion serves, not the later training's.
    other = next(c for c in CLIENTS if _group_of(ws, c) != removed.group)
    after = _remove(ws, runner, other, request_id="w2")
    weights = json.loads(after.version.tags["unlearn.weights"])
    assert (
        weights[str(removed.group)]
        == json.loads(removed.version.tags["unlearn.weights"])[str(removed.group)]
    )


def test_a_federated_version_whose_group_models_are_gone_or_changed_is_not_served_again(
    trained: Trained,
) -> None:
    from unlearn_ops.errors import RollbackError
    from unlearn_ops.workflow.rollback import plan_rollback

    ws, runner, _ = trained
    target = _remove(ws, runner, CLIENTS[1], request_id="w1").version
    _retrained(ws, runner)
    champion = ws.registry().alias_version("champion")
    served = json.loads(
        ws.lineage().read_git_file(target.tag("git_sha"), "federation/served.json")
    )["groups"]
    group, facts = sorted(served.items())[0]
    model = ws.root / "federation" / "runs" / facts["run"] / facts["final"]

    with np.load(model) as archive:
        arrays = [archive[f"arr_{i}"] for i in range(len(archive.files))]
    np.savez(model, *[a + 1 for a in arrays])
    with pytest.raises(RollbackError, match=f"model of group {group} .* not the one it registered"):
        plan_rollback(ws, target.version)
    model.unlink()
    with pytest.raises(RollbackError, match=rf"model of group {group} .* is gone \(purged\)"):
        plan_rollback(ws, target.version)
    assert ws.registry().alias_version("champion") == champion


def test_rolling_back_a_federation_with_no_champion_says_to_train_the_federation(
    federation: tuple[Workspace, InProcessRunner],
) -> None:
    from unlearn_ops.errors import RollbackError
    from unlearn_ops.workflow.rollback import plan_rollback

    ws, _ = federation
    with pytest.raises(
        RollbackError, match=r"no version is champion yet; run `unlearn-ops federation train`"
    ):
        plan_rollback(ws)

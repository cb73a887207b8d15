"""The exactness certificate of a federated version: its groups federated again, from scratch.

A client removal retrains the client's group without it (KNOT's exact removal). Its
certificate federates that group once more on the deployment, from scratch, with the
group's clients less every client the version had removed, and compares the final model's
SHA-256 with the one the version recorded (`unlearn.weights`), bit for bit. Training is
deterministic (seeded clients, replies in partition order), so an honest removal matches
and a version that still holds a removed client's influence does not.

The run goes to `WS/federation/runs/certify-vN/` (`certify-vN-2` the next time) and serves
nothing: `served.json`, the registry and the ledger are left as they are. A FedEraser
version is approximate and has no certificate; a version trained with a client removed
since cannot be certified either (its site, and its data, have left the federation).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from unlearn_ops.errors import FederationError
from unlearn_ops.workflow import federated
from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "FederatedCertificate",
    "GroupCertificate",
    "certify_federated_version",
    "plan_certificate",
]


class GroupCertificate(BaseModel):
    """One group: the weights the version serves against a fresh federation's."""

    model_config = ConfigDict(frozen=True)

    group: int
    clients: int
    served_hash: str
    scratch_hash: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exact(self) -> bool:
        """The fresh federation gave the served weights, bit for bit."""
        return bool(self.served_hash) and self.served_hash == self.scratch_hash


class FederatedCertificate(BaseModel):
    """The certificate of a federated version over some of its groups (`to_dict`: JSON)."""

    model_config = ConfigDict(frozen=True)

    version: str
    groups: tuple[GroupCertificate, ...]
    run: str
    seconds: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        """Every checked group is exact."""
        return bool(self.groups) and all(group.exact for group in self.groups)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: the verdict, the run, and each group's hashes and verdict."""
        return self.model_dump(mode="json")


def plan_certificate(
    workspace: Workspace, version: str, groups: Sequence[int] | None = None
) -> tuple[str, dict[int, str], Path]:
    """The plan that federates a version's groups afresh; (version, expected hashes, plan).

    `groups` defaults to the groups the version retrained (a removal), or all its groups
    (a training).

    Raises:
        VersionNotFoundError: no such version (VersionPurgedError: purged).
        FederationError: the version is not a federated model, is FedEraser's (approximate),
            names a group it does not serve, or was trained with a client removed since.
    """
    info = workspace.find_version(version)
    subject = f"certify version {info.version}"
    if info.tag("engine") != "flower":
        raise FederationError(
            subject,
            "it is not a federated model",
            f"`unlearn-ops verify {info.version}` certifies a SISA version",
        )
    if info.tag("provisional") == "true":
        raise FederationError(
            subject,
            f"it is provisional ({info.tag('removal_method') or 'approximate'}): an "
            "approximate removal has no exactness certificate",
            "remove the client exactly (`unlearn-ops federation remove-exactly`)",
        )
    weights = {int(g): h for g, h in json.loads(info.tag("weights") or "{}").items()}
    retrained = [int(g) for g in json.loads(info.tag("shards_retrained") or "[]")]
    chosen = sorted(set(groups if groups is not None else retrained or weights))
    unknown = [g for g in chosen if g not in weights]
    if unknown:
        raise FederationError(
            subject, f"it serves no group {unknown[0]}", f"its groups are {sorted(weights)}"
        )
    state = federated.read_state(workspace)
    removed_then = set(json.loads(info.tag("clients_removed") or "[]"))
    members: dict[int, list[int]] = {g: [] for g in chosen}
    left_since: list[str] = []
    gone = {r["client_hash"] for r in state["removed"]}
    for client in state["clients"]:
        group = int(client["group"])
        if group not in members or client["client_hash"] in removed_then:
            continue
        if client["client_hash"] in gone:
            left_since.append(client["client_hash"])
        members[group].append(int(client["partition_id"]))
    if left_since:
        raise FederationError(
            subject,
            f"it was trained with {len(left_since)} client(s) removed since "
            f"({', '.join(h[:12] for h in sorted(left_since))}): their data has left the "
            "federation",
            "certify the version that removed them, or a later one",
        )
    name = federated.fresh_run_name(workspace, f"certify-v{info.version}")
    plan = federated.write_plan(workspace, name, members)
    return info.version, {g: weights[g] for g in chosen}, plan


def certify_federated_version(
    workspace: Workspace,
    version: str,
    runner: federated.FederationRunner,
    groups: Sequence[int] | None = None,
) -> FederatedCertificate:
    """Federate the version's groups afresh on the deployment and compare, bit for bit.

    Raises:
        VersionNotFoundError, FederationError: as :func:`plan_certificate`; FederationError
            too when the run fails.
    """
    started = time.perf_counter()
    number, expected, plan_path = plan_certificate(workspace, version, groups)
    runner.run_plan(plan_path, plan_path.parent / "flwr-run.log")
    result = json.loads((plan_path.parent / "result.json").read_text(encoding="utf-8"))
    checked = []
    for group, served_hash in sorted(expected.items()):
        facts = result["groups"].get(str(group), {})
        checked.append(
            GroupCertificate(
                group=group,
                clients=len(facts.get("partitions", [])),
                served_hash=served_hash,
                scratch_hash=str(facts.get("weights_hash", "")),
            )
        )
    return FederatedCertificate(
        version=number,
        groups=tuple(checked),
        run=plan_path.parent.name,
        seconds=round(time.perf_counter() - started, 3),
    )

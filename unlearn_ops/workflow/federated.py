"""A federation kept in a workspace: its clients (keyed hashes), runs, served groups, removals.

The library side of the `federated-*` flows (:mod:`pipelines.federated`). Layout::

    WS/federation/federation.json   params, shape, clients (hash, partition, group), removed
    WS/federation/holdout.parquet   the server's held-out table (`label` + features)
    WS/federation/runs/NAME/        a Flower run: plan.json, result.json, group checkpoints
    WS/federation/served.json       which run's model each group serves

Clients appear only as keyed hashes (`client:<id>` under the id-hash key, as
:func:`unlearn_ops.federated.groups.hash_client_id`); the clear id lives at its site (the
SuperNode's node config) and, for the time of a request, in memory. A withdrawal (ledger reason
`withdrawal`) or an expulsion (`poisoning`) retrains the client's group only, from scratch
without it (KNOT's exact removal): every other group keeps its model. The served model (mean
of the groups') is registered like a SISA ensemble, one `shard-GGG` file per group
(:mod:`unlearn_ops.workflow.federated_registration`); its certificate federates a group
again (:mod:`unlearn_ops.workflow.federated_certificate`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from unlearn_ops.deletion.envelope import VerifiedRequest
from unlearn_ops.errors import FederationError, InvalidRequestError, LineageError
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.groups import assign_groups
from unlearn_ops.settings import Settings
from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "FederationRunner",
    "RemovalMethod",
    "RemovalReason",
    "active_clients",
    "active_member",
    "client_group",
    "federation_folder",
    "fresh_run_name",
    "plan_removal",
    "plan_training",
    "read_state",
    "receive_withdrawal",
    "record_withdrawal",
    "run_plan",
    "served_groups",
    "setup_federation",
    "why_not_erasable",
    "withdrawn_client",
    "write_plan",
    "write_state",
]

RemovalReason = Literal["withdrawal", "poisoning"]
RemovalMethod = Literal["exact", "federaser"]
METHOD_TAGS: dict[str, str] = {"exact": "exact-group-retrain", "federaser": "federaser"}
LABEL_COLUMN = "label"


class FederationRunner(Protocol):
    """Runs the Flower App on a plan (the deployment's `flwr run`, or a test's fake)."""

    def run_plan(self, plan_path: Path, log_path: Path) -> None:
        """Run the plan to its end; raise :class:`FederationError` when the run failed."""
        ...


def federation_folder(workspace: Workspace) -> Path:
    """`WS/federation/`."""
    return workspace.federation_dir


def read_state(workspace: Workspace) -> dict[str, Any]:
    """`federation.json` (params, shape, clients, removals); FederationError if none."""
    state = workspace.read_json(federation_folder(workspace) / "federation.json")
    if state is None:
        raise FederationError(
            "read the federation", f"no federation in {workspace.root}", "set it up first"
        )
    return state


def write_state(workspace: Workspace, name: str, state: Mapping[str, Any]) -> None:
    """Write `federation.json` or `served.json`."""
    workspace.write_json(federation_folder(workspace) / name, dict(state))


def setup_federation(
    workspace: Workspace,
    partitions: Mapping[str, int],
    params: FederationParams,
    *,
    num_features: int,
    num_classes: int,
    holdout: Any,
) -> dict[int, int]:
    """Record the federation's members (by keyed hash), their groups and the holdout.

    Args:
        workspace: the workspace that keeps the federation.
        partitions: client id -> the partition id its SuperNode is started with.
        params: the federation's params.
        num_features: features per example.
        num_classes: classes.
        holdout: the server's held-out table (`label` + feature columns), a DataFrame.

    Returns:
        Group id -> number of clients.

    Raises:
        FederationError: the workspace keeps a federation already, or the keyed hash
            leaves a group without a client (nothing is written).
    """
    if (federation_folder(workspace) / "federation.json").exists():
        raise FederationError(
            "set up the federation",
            f"{workspace.root} keeps one already",
            "its members change by removals (`unlearn-ops federation remove`)",
        )
    key = workspace.settings.id_hash_key.get_secret_value()
    groups = assign_groups(sorted(partitions), params.num_groups, key)
    empty = sorted(set(range(params.num_groups)) - set(groups.values()))
    if empty:
        raise FederationError(
            "set up the federation",
            f"num_groups {params.num_groups}: group(s) {', '.join(map(str, empty))} would "
            f"have no client among {len(partitions)}",
            "fewer groups, or more sites",
        )
    clients = [
        {
            "client_hash": workspace.settings.hash_record_id(f"client:{client_id}"),
            "partition_id": int(partitions[client_id]),
            "group": groups[client_id],
        }
        for client_id in sorted(partitions)
    ]
    folder = federation_folder(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    holdout.to_parquet(folder / "holdout.parquet")
    write_state(
        workspace,
        "federation.json",
        {
            "params": params.model_dump(mode="json"),
            "num_features": num_features,
            "num_classes": num_classes,
            "feature_columns": [c for c in holdout.columns if c != LABEL_COLUMN],
            "clients": sorted(clients, key=lambda c: c["partition_id"]),
            "removed": [],
        },
    )
    sizes = [0] * params.num_groups
    for group in groups.values():
        sizes[group] += 1
    return dict(enumerate(sizes))


def write_plan(
    workspace: Workspace,
    name: str,
    groups: Mapping[int, list[int]],
    history: Mapping[int, Path] | None = None,
) -> Path:
    """Write `runs/NAME/plan.json` (a new folder): these groups with these partitions.

    Raises:
        FederationError: a run of that name exists, or the workspace keeps no history
            (nothing is written).
    """
    state = read_state(workspace)
    try:  # a version's lineage is a revision: find out now, not after the run
        workspace.lineage().head()
    except LineageError:
        raise FederationError(
            f"plan run {name!r}",
            f"{workspace.root} keeps no history (git) for the versions' lineage",
            "make the workspace with `unlearn-ops init`",
        ) from None
    run = federation_folder(workspace) / "runs" / name
    try:
        run.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise FederationError(
            f"plan run {name!r}", f"{run} exists", "name another run (or leave the name out)"
        ) from None
    plan = {
        "output_dir": str(run),
        "params": state["params"],
        "num_features": state["num_features"],
        "num_classes": state["num_classes"],
        "groups": {str(g): sorted(ps) for g, ps in sorted(groups.items())},
    }
    if history is not None:
        plan["history"] = {str(g): str(path) for g, path in sorted(history.items())}
    (run / "plan.json").write_text(json.dumps(plan, indent=2, sort_keys=True), encoding="utf-8")
    return run / "plan.json"


def served_groups(workspace: Workspace) -> dict[str, dict[str, Any]]:
    """`served.json`'s groups: group id (text) -> the run serving it and its result facts."""
    served: dict[str, dict[str, Any]] = (
        workspace.read_json(federation_folder(workspace) / "served.json") or {"groups": {}}
    )["groups"]
    return served


def active_clients(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The federation's clients less the removed ones."""
    removed = {r["client_hash"] for r in state["removed"]}
    return [c for c in state["clients"] if c["client_hash"] not in removed]


def client_group(clients: Iterable[Mapping[str, Any]], client_hash: str) -> int | None:
    """The group of the client with this keyed hash among `clients`, or None."""
    return next((int(c["group"]) for c in clients if c["client_hash"] == client_hash), None)


def active_member(workspace: Workspace, client_id: str) -> str:
    """The keyed hash of `client_id`, a client of the federation that has not left it.

    Raises:
        FederationError: no federation in the workspace.
        InvalidRequestError: no such client, or removed already (the id is not repeated).
    """
    state = read_state(workspace)
    client_hash = workspace.settings.hash_record_id(f"client:{client_id}")
    if client_hash in {c["client_hash"] for c in active_clients(state)}:
        return client_hash
    removed = client_hash in {r["client_hash"] for r in state["removed"]}
    raise InvalidRequestError(
        "that client has left the federation" if removed else "no such client in the federation",
        "name a site by the client id it trains under; nothing was changed",
    )


def plan_training(workspace: Workspace, name: str | None = None) -> Path:
    """A plan that trains every group with all its active clients (`train`, `train-2`...
    when `name` is None)."""
    groups: dict[int, list[int]] = {}
    for client in active_clients(read_state(workspace)):
        groups.setdefault(int(client["group"]), []).append(int(client["partition_id"]))
    return write_plan(workspace, name or fresh_run_name(workspace, "train"), groups)


def receive_withdrawal(
    workspace: Workspace, request: VerifiedRequest, reason: RemovalReason
) -> str:
    """Check a client request and record it as `received`; the client's keyed hash.

    Raises:
        InvalidRequestError: the request names no client, or one not in the federation
            (nothing is recorded).
    """
    client_hash = withdrawn_client(request, workspace.settings)
    record_withdrawal(workspace, request.request_id, client_hash, reason, request.authenticated_by)
    return client_hash


def withdrawn_client(request: VerifiedRequest, settings: Settings) -> str:
    """The keyed hash of the client a request withdraws; InvalidRequestError if it names none."""
    client_hash = request.client_hash(settings)
    if client_hash is None:
        raise InvalidRequestError(
            f"request {request.request_id} names no client", "send a `client_id` request"
        )
    return client_hash


def record_withdrawal(
    workspace: Workspace,
    request_id: str,
    client_hash: str,
    reason: RemovalReason,
    signed_by: str,
) -> None:
    """Record a verified withdrawal as `received` (once: a retried request is not recorded again).

    Raises:
        InvalidRequestError: the client is not in the federation (nothing is recorded).
    """
    state = read_state(workspace)
    if client_hash not in {c["client_hash"] for c in state["clients"]}:
        raise InvalidRequestError(
            f"request {request_id} names a client that is not in this federation"
        )
    known = workspace.ledger.request(request_id)
    if known is not None and known.received_at:  # a retry: received once already
        return
    workspace.ledger.append(
        "received",
        request_id,
        kind="client",
        client_hashes=[client_hash],
        record_hashes=[],
        reason=reason,
        signed_by=signed_by,
    )


def fresh_run_name(workspace: Workspace, base: str) -> str:
    """`base`, or `base-2`, `base-3`... : the first name no run of the federation has."""
    runs = federation_folder(workspace) / "runs"
    name, number = base, 1
    while (runs / name).exists():
        number += 1
        name = f"{base}-{number}"
    return name


def plan_removal(
    workspace: Workspace, client_hash: str, name: str, method: RemovalMethod = "exact"
) -> tuple[int, Path]:
    """The plan that removes the client from its group; the group and the plan's path.

    `exact` retrains the group without the client from scratch (KNOT); `federaser`
    rebuilds it from the updates the group's served training run stored, with
    calibration rounds of the remaining clients (FedEraser; approximate, provisional).

    Raises:
        FederationError: the group would be empty, or (FedEraser) its served model is not
            a training run with stored updates.
    """
    state = read_state(workspace)
    group = client_group(state["clients"], client_hash)
    if group is None:  # the ledger received it as a member; the membership file disagrees
        raise FederationError(
            "remove the client", "it is not in federation.json", "check the workspace"
        )
    remaining = [
        int(c["partition_id"])
        for c in active_clients(state)
        if int(c["group"]) == group and c["client_hash"] != client_hash
    ]
    if not remaining:
        raise FederationError(
            "remove the client", f"group {group} would have no client left", "retire the group"
        )
    if method == "exact":
        return group, write_plan(workspace, name, {group: remaining})
    why_not = why_not_erasable(workspace, group)
    if why_not is not None:
        raise FederationError(
            "erase the client",
            why_not,
            "remove it exactly (method exact), or train the federation again first",
        )
    facts = served_groups(workspace)[str(group)]
    history = federation_folder(workspace) / "runs" / facts["run"] / f"group-{group:03d}"
    return group, write_plan(workspace, name, {group: remaining}, {group: history})


def why_not_erasable(workspace: Workspace, group: int) -> str | None:
    """Why FedEraser cannot remove a client of `group` (None: it can)."""
    facts = served_groups(workspace).get(str(group))
    if facts is None or facts.get("method", "fedavg") != "fedavg":
        return f"group {group} is not served by a training run with stored updates"
    return None


def run_plan(workspace: Workspace, plan_path: Path, runner: FederationRunner) -> dict[str, Any]:
    """Run a plan and mark its groups as served by it; the run's `result.json`."""
    runner.run_plan(plan_path, plan_path.parent / "flwr-run.log")
    result: dict[str, Any] = json.loads((plan_path.parent / "result.json").read_text())
    served = workspace.read_json(federation_folder(workspace) / "served.json") or {"groups": {}}
    for group, facts in result["groups"].items():
        served["groups"][group] = {"run": plan_path.parent.name, **facts}
    write_state(workspace, "served.json", served)
    return result

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
of the groups') is registered like a SISA ensemble, one `shard-GGG` file per group.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from unlearn_ops.deletion.envelope import VerifiedRequest
from unlearn_ops.errors import FederationError, InvalidRequestError
from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.groups import assign_groups
from unlearn_ops.serving.provenance import VersionProvenance
from unlearn_ops.serving.versions import CHAMPION, NewVersion, VersionInfo, schema_example
from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "FederationRunner",
    "RemovalMethod",
    "RemovalReason",
    "plan_removal",
    "plan_training",
    "receive_withdrawal",
    "register_federated_version",
    "run_plan",
    "setup_federation",
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


def _folder(workspace: Workspace) -> Path:
    return workspace.root / "federation"


def _state(workspace: Workspace) -> dict[str, Any]:
    state = workspace.read_json(_folder(workspace) / "federation.json")
    if state is None:
        raise FederationError(
            "read the federation", f"no federation in {workspace.root}", "set it up first"
        )
    return state


def _write_state(workspace: Workspace, name: str, state: Mapping[str, Any]) -> None:
    workspace.write_json(_folder(workspace) / name, dict(state))


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
    """
    key = workspace.settings.id_hash_key.get_secret_value()
    groups = assign_groups(sorted(partitions), params.num_groups, key)
    clients = [
        {
            "client_hash": workspace.settings.hash_record_id(f"client:{client_id}"),
            "partition_id": int(partitions[client_id]),
            "group": groups[client_id],
        }
        for client_id in sorted(partitions)
    ]
    folder = _folder(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    holdout.to_parquet(folder / "holdout.parquet")
    _write_state(
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


def _write_plan(
    workspace: Workspace,
    name: str,
    groups: Mapping[int, list[int]],
    history: Mapping[int, Path] | None = None,
) -> Path:
    state = _state(workspace)
    run = _folder(workspace) / "runs" / name
    run.mkdir(parents=True, exist_ok=False)
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


def _active(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    removed = {r["client_hash"] for r in state["removed"]}
    return [c for c in state["clients"] if c["client_hash"] not in removed]


def plan_training(workspace: Workspace, name: str) -> Path:
    """A plan that trains every group with all its active clients."""
    groups: dict[int, list[int]] = {}
    for client in _active(_state(workspace)):
        groups.setdefault(int(client["group"]), []).append(int(client["partition_id"]))
    return _write_plan(workspace, name, groups)


def receive_withdrawal(
    workspace: Workspace, request: VerifiedRequest, reason: RemovalReason
) -> str:
    """Check a client request and record it as `received`; the client's keyed hash.

    Raises:
        InvalidRequestError: the request names no client, or one not in the federation
            (nothing is recorded).
    """
    client_hash = request.client_hash(workspace.settings)
    if client_hash is None:
        raise InvalidRequestError(
            f"request {request.request_id} names no client", "send a `client_id` request"
        )
    state = _state(workspace)
    if client_hash not in {c["client_hash"] for c in state["clients"]}:
        raise InvalidRequestError(
            f"request {request.request_id} names a client that is not in this federation"
        )
    workspace.ledger.append(
        "received",
        request.request_id,
        kind="client",
        client_hashes=[client_hash],
        record_hashes=[],
        reason=reason,
        signed_by=request.authenticated_by,
    )
    return client_hash


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
    state = _state(workspace)
    group = next(int(c["group"]) for c in state["clients"] if c["client_hash"] == client_hash)
    remaining = [
        int(c["partition_id"])
        for c in _active(state)
        if int(c["group"]) == group and c["client_hash"] != client_hash
    ]
    if not remaining:
        raise FederationError(
            "remove the client", f"group {group} would have no client left", "retire the group"
        )
    if method == "exact":
        return group, _write_plan(workspace, name, {group: remaining})
    served = (workspace.read_json(_folder(workspace) / "served.json") or {"groups": {}})["groups"]
    facts = served.get(str(group))
    if facts is None or facts.get("method", "fedavg") != "fedavg":
        raise FederationError(
            "erase the client",
            f"group {group} is not served by a training run with stored updates",
            "remove it exactly (method exact), or train the federation again first",
        )
    history = _folder(workspace) / "runs" / facts["run"] / f"group-{group:03d}"
    return group, _write_plan(workspace, name, {group: remaining}, {group: history})


def run_plan(workspace: Workspace, plan_path: Path, runner: FederationRunner) -> dict[str, Any]:
    """Run a plan and mark its groups as served by it; the run's `result.json`."""
    runner.run_plan(plan_path, plan_path.parent / "flwr-run.log")
    result: dict[str, Any] = json.loads((plan_path.parent / "result.json").read_text())
    served = workspace.read_json(_folder(workspace) / "served.json") or {"groups": {}}
    for group, facts in result["groups"].items():
        served["groups"][group] = {"run": plan_path.parent.name, **facts}
    _write_state(workspace, "served.json", served)
    return result


def _evaluate(workspace: Workspace, model_files: Mapping[str, Path]) -> tuple[float, Any, Any]:
    """Held-out accuracy of the served model, and (input, output) frames for its signature."""
    import pandas as pd

    from unlearn_ops.serving.predictor import EnsemblePredictor

    holdout = pd.read_parquet(_folder(workspace) / "holdout.parquet")
    predictor = EnsemblePredictor.from_artifacts(model_files)
    predicted = predictor.predict(holdout)["prediction"].to_numpy()
    accuracy = float(np.mean(predicted == holdout[LABEL_COLUMN]))
    sample = schema_example(holdout.drop(columns=[LABEL_COLUMN]))
    return accuracy, sample, predictor.predict(sample)


def _model_files(workspace: Workspace, state: Mapping[str, Any], scratch: Path) -> dict[str, Path]:
    """The served groups as a SISA-shaped model: `shard-GGG` state dicts, manifest, params."""
    import torch

    from unlearn_ops.federated.client import load_weights
    from unlearn_ops.params import Params

    params = FederationParams.model_validate(state["params"])
    served = (workspace.read_json(_folder(workspace) / "served.json") or {"groups": {}})["groups"]
    files: dict[str, Path] = {}
    for group, facts in sorted(served.items(), key=lambda item: int(item[0])):
        run = _folder(workspace) / "runs" / facts["run"]
        with np.load(run / facts["final"], allow_pickle=False) as archive:
            weights = [archive[f"arr_{i}"] for i in range(len(archive.files))]
        module = load_weights(weights, params, state["num_features"], state["num_classes"])
        path = scratch / f"group-{int(group):03d}.pt"
        torch.save(module.state_dict(), path)
        files[f"shard-{int(group):03d}"] = path
    manifest = scratch / "ensemble.json"
    manifest.write_text(
        json.dumps(
            {"feature_columns": state["feature_columns"], "num_classes": state["num_classes"]}
        )
    )
    files["ensemble"] = manifest
    version_params = Params.model_validate(
        {**workspace.params.model_dump(mode="json"), "model": params.model.model_dump(mode="json")}
    )
    files["params"] = scratch / "params.yaml"
    files["params"].write_text(version_params.to_yaml(), encoding="utf-8")
    return files


def register_federated_version(
    workspace: Workspace,
    *,
    kind: Literal["train", "forget"],
    request_ids: tuple[str, ...] = (),
    removed: Mapping[str, RemovalReason] | None = None,
    method: str = "",
    groups_retrained: tuple[int, ...] = (),
    timings: Mapping[str, float] | None = None,
) -> VersionInfo:
    """Register the served groups as a version, move `champion` to it, close the requests.

    The tags name removed clients by keyed hash only (`unlearn.clients_removed`, a JSON
    list, cumulative), the removal method and reason, and each group's run and weights.

    Raises:
        GateFailedError: the candidate's held-out accuracy dropped more than
            `gates.max_accuracy_drop` below the champion's (`champion` stays).
    """
    import pandas as pd

    from unlearn_ops.errors import GateFailedError

    removed = dict(removed or {})
    state = _state(workspace)
    state["removed"] = state["removed"] + [
        {"client_hash": h, "reason": r, "method": method, "requests": list(request_ids)}
        for h, r in sorted(removed.items())
    ]
    registry = workspace.registry()
    served = (workspace.read_json(_folder(workspace) / "served.json") or {"groups": {}})["groups"]
    champion = registry.alias_version(CHAMPION)
    with tempfile.TemporaryDirectory(prefix="unlearn-federated-") as scratch:
        files = _model_files(workspace, state, Path(scratch))
        accuracy, sample, output = _evaluate(workspace, files)
        previous, honoured = None, []
        if champion is not None:
            current = registry.get_version(champion)
            previous, honoured = float(current.tag("accuracy")), current.honoured_requests
        drop = 0.0 if previous is None else previous - accuracy
        passed = drop <= workspace.params.gates.max_accuracy_drop
        gate = {"passed": passed, "accuracy": accuracy, "champion_accuracy": previous}
        all_removed = sorted({r["client_hash"] for r in state["removed"]})
        provenance = VersionProvenance(
            kind=kind,
            request_ids=request_ids,
            # Cumulative, as for record deletions: the champion's, then this version's.
            honoured_request_ids=tuple(dict.fromkeys((*honoured, *request_ids))),
            parent_version=champion,
            git_sha="",
            data_md5="",
            shard_md5s={},
            shards_retrained=groups_retrained,
            first_stages={g: 0 for g in groups_retrained},
            records_forgotten=0,
            training_hash="",
            seed=int(state["params"]["seed"]),
            weights={int(g): f["weights_hash"] for g, f in served.items()},
            gates={"metric": gate},
            timings=dict(timings or {}),
            accuracy=accuracy,
            extra={
                "engine": "flower",
                "clients_removed": json.dumps(all_removed),
                "removal_method": method,
                # FedEraser's model is approximate: no certificate, provisional (issue 13).
                "provisional": str(method == "federaser").lower(),
                "removal_reasons": json.dumps(sorted(set(removed.values()))),
                "federation.runs": json.dumps({g: f["run"] for g, f in sorted(served.items())}),
            },
        )
        manifest = pd.DataFrame(
            [{"client_hash": c["client_hash"], "group": c["group"]} for c in _active(state)]
        )
        version = registry.log_version(
            NewVersion(
                provenance=provenance,
                description=(
                    f"federated model of {len(served)} client group(s)"
                    + (f"; {len(removed)} client(s) removed ({method})" if removed else "")
                ),
                model_files=files,
                training_frame=manifest,
                dataset_source=str(_folder(workspace) / "federation.json"),
                params={"groups": len(served), "rounds": state["params"]["rounds"]},
                metrics={"accuracy": accuracy},
                signature_frames=(sample, output),
            )
        )
    _write_state(workspace, "federation.json", state)
    if not passed:
        for request_id in request_ids:
            workspace.ledger.append(
                "failed", request_id, reason="metric gate", version=version.version
            )
        raise GateFailedError(version.version, f"held-out accuracy dropped {drop:.3f}", champion)
    registry.set_alias(CHAMPION, version.version)
    for request_id in request_ids:
        workspace.ledger.append(
            "served",
            request_id,
            version=version.version,
            client_hashes=sorted(removed),
            method=method,
            reason=", ".join(sorted(set(removed.values()))),
        )
    return version

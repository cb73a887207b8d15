"""The federation's flows (wiring only): `federated-train`, `remove-client`, `certify-federated`,
and `remove-clients-exactly`, the exact removal owed after FedEraser ones (served on an
interval by :func:`remove_exactly_deployment`, like the monolithic exact retrain).

Both act through a Flower deployment's SuperLink (``flower_home`` holds its connection,
``flower_bin`` the Flower environment's executables, see infra/flower.py); the work is
:mod:`unlearn_ops.workflow.federated`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from pipelines.tasks import as_task
from unlearn_ops.adapters.flower.cli import FlowerAppRunner, FlowerCli
from unlearn_ops.deletion.drain import Withdraw
from unlearn_ops.deletion.envelope import verify_request
from unlearn_ops.deletion.inbox import InboxEntry
from unlearn_ops.errors import InvalidRequestError
from unlearn_ops.settings import Settings
from unlearn_ops.workflow import (
    federated,
    federated_certificate,
    federated_holds,
    federated_provisional,
    federated_registration,
)
from unlearn_ops.workflow.federated_certificate import FederatedCertificate
from unlearn_ops.workflow.workspace import Workspace

APP_DIR = Path(__file__).resolve().parent.parent / "federation"

plan_training = as_task(federated.plan_training, "plan-federated-training")
receive_withdrawal = as_task(federated_holds.receive_unless_held, "receive-withdrawal")
plan_removal = as_task(federated.plan_removal, "plan-client-removal")
run_plan = as_task(federated.run_plan, "run-flower-app")
register = as_task(federated_registration.register_federated_version, "register-federated-version")
pending_removals = as_task(
    federated_provisional.pending_exact_removals, "find-pending-exact-removals"
)
register_removal = as_task(federated_registration.register_removal, "register-federated-version")
certify = as_task(federated_certificate.certify_federated_version, "federate-groups-afresh")


def _runner(flower_home: str, flower_bin: str) -> FlowerAppRunner:
    return FlowerAppRunner(FlowerCli(Path(flower_bin).resolve(), Path(flower_home)), APP_DIR)


@flow(name="federated-train")
def federated_train(
    workspace: str, flower_home: str, flower_bin: str, run_name: str | None = None
) -> str:
    """Train every client group on the deployment and register the served model.

    Example:
        >>> federated_train("ws", ".flower/flwr-home", ".venv-flower/bin", "r1")  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    with ws.lock():
        plan = plan_training(ws, run_name)
        run_plan(ws, plan, _runner(flower_home, flower_bin))
        return register(ws, kind="train").version


def _remove(
    ws: Workspace,
    request_id: str,
    client_hash: str,
    signed_by: str,
    runner: federated.FederationRunner,
    reason: federated.RemovalReason,
    method: federated.RemovalMethod,
) -> str:
    """Receive (a held site's withdrawal stops here), plan, run on the deployment, register:
    the removal's steps (lock held)."""
    receive_withdrawal(ws, request_id, client_hash, reason, signed_by)
    return _retrain_group(ws, request_id, client_hash, runner, reason, method)


def _retrain_group(
    ws: Workspace,
    request_id: str,
    client_hash: str,
    runner: federated.FederationRunner,
    reason: federated.RemovalReason,
    method: federated.RemovalMethod,
) -> str:
    """Plan the client's group without it, run it on the deployment, register (lock held)."""
    name = federated.fresh_run_name(ws, f"remove-{request_id}")
    group, plan = plan_removal(ws, client_hash, name, method)
    run_plan(ws, plan, runner)
    return str(register_removal(ws, request_id, client_hash, group, reason, method).version)


@flow(name="remove-client")
def remove_client(
    workspace: str,
    envelope: dict[str, Any],
    flower_home: str,
    flower_bin: str,
    reason: federated.RemovalReason = "withdrawal",
    method: federated.RemovalMethod = "exact",
) -> str:
    """Remove the client a signed request names from its group (exact or FedEraser), register.

    Example:
        >>> remove_client("ws", signed, ".flower/flwr-home", ".venv-flower/bin")  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    request = verify_request(envelope, ws.settings)
    client_hash = federated.withdrawn_client(request, ws.settings)
    runner = _runner(flower_home, flower_bin)
    with ws.lock():
        return _remove(
            ws, request.request_id, client_hash, request.authenticated_by, runner, reason, method
        )


@flow(name="remove-clients-exactly")
def remove_clients_exactly(workspace: str, flower_home: str, flower_bin: str) -> dict[str, Any]:
    """Remove exactly every client FedEraser removed whose request is served approximately.

    One exact retrain per group on the deployment serves all of that group's pending
    requests and supersedes the provisional versions. A run whose gate fails raises (Prefect
    marks it failed) and leaves the requests approximate: `audit` and `report` show them
    overdue once their deadline passes.

    Example:
        >>> remove_clients_exactly("ws", ".flower/flwr-home", ".venv-flower/bin")  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    runner = _runner(flower_home, flower_bin)
    with ws.lock():
        owed = pending_removals(ws)
        if not owed:
            return {"noop": True, "message": "no client removal waits for an exact removal"}
        versions = [
            _retrain_group(ws, p.request_id, p.client_hash, runner, p.reason, "exact") for p in owed
        ]
        return {
            "exact": True,
            "versions": versions,
            "version": versions[-1],
            "groups": [p.group for p in owed],
            "requests": [r for p in owed for r in p.requests],
        }


def remove_exactly_deployment(
    workspace: str,
    flower_home: str,
    flower_bin: str,
    *,
    name: str = "remove-clients-exactly",
    interval_seconds: float = 86_400.0,
) -> Any:
    """A deployment of :func:`remove_clients_exactly` on an interval, for `prefect.serve(...)`;
    keep the interval well inside `compliance.deadline_days`."""
    return remove_clients_exactly.to_deployment(
        name=name,
        interval=interval_seconds,
        parameters={"workspace": workspace, "flower_home": flower_home, "flower_bin": flower_bin},
    )


def serve_remove_exactly(
    workspace: str, flower_home: str, flower_bin: str, *, interval_seconds: float
) -> None:
    """Serve :func:`remove_exactly_deployment` until stopped, one run at a time."""
    from prefect import serve

    deployment = remove_exactly_deployment(
        workspace, flower_home, flower_bin, interval_seconds=interval_seconds
    )
    serve(deployment, limit=1, print_starting_message=False)


def withdrawal_stage(runner: federated.FederationRunner) -> Withdraw:
    """The drain's stage for withdrawals from the inbox: the client removed from its group on
    the deployment `runner` drives (exact, or FedEraser per `unlearning.withdrawals`),
    registered."""

    def withdraw(ws: Workspace, entry: InboxEntry) -> dict[str, Any]:
        if entry.client_hash is None:  # the drain sends withdrawals only
            raise InvalidRequestError(f"request {entry.request_id} names no client")
        method, note = federated_provisional.inbox_removal_method(ws, entry.client_hash)
        version = _remove(
            ws,
            entry.request_id,
            entry.client_hash,
            entry.authenticated_by,
            runner,
            "withdrawal",
            method,
        )
        return {
            "version": version,
            "request_id": entry.request_id,
            "method": method,
            **({"note": note} if note else {}),
        }

    return withdraw


def deployment_withdrawals(settings: Settings) -> Withdraw | None:
    """The withdrawal stage on the deployment the settings name; None where none is set."""
    if settings.flower_home is None:
        return None
    return withdrawal_stage(_runner(str(settings.flower_home), str(settings.flower_executables())))


@flow(name="certify-federated")
def certify_federated(
    workspace: str,
    version: str,
    flower_home: str,
    flower_bin: str,
    groups: list[int] | None = None,
) -> FederatedCertificate:
    """The exactness certificate of a federated version: its groups federated afresh.

    Example:
        >>> certify_federated("ws", "2", ".flower/flwr-home", ".venv-flower/bin")  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    with ws.lock():  # a run folder is written; removals wait
        return certify(ws, version, _runner(flower_home, flower_bin), groups)

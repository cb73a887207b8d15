"""The federation's flows: `federated-train`, `remove-client`, `certify-federated` (wiring only).

Both act through a Flower deployment's SuperLink (``flower_home`` holds its connection,
``flower_bin`` the Flower environment's executables, see infra/flower.py); the work is
:mod:`unlearn_ops.workflow.federated`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from unlearn_ops.adapters.flower.cli import FlowerAppRunner, FlowerCli
from unlearn_ops.deletion.envelope import verify_request
from unlearn_ops.workflow import federated, federated_certificate, federated_registration
from unlearn_ops.workflow.federated_certificate import FederatedCertificate
from unlearn_ops.workflow.workspace import Workspace

APP_DIR = Path(__file__).resolve().parent.parent / "federation"

plan_training = task(name="plan-federated-training", cache_policy=NO_CACHE)(federated.plan_training)
receive_withdrawal = task(name="receive-withdrawal", cache_policy=NO_CACHE)(
    federated.receive_withdrawal
)
plan_removal = task(name="plan-client-removal", cache_policy=NO_CACHE)(federated.plan_removal)
run_plan = task(name="run-flower-app", cache_policy=NO_CACHE)(federated.run_plan)
register = task(name="register-federated-version", cache_policy=NO_CACHE)(
    federated_registration.register_federated_version
)
certify = task(name="federate-groups-afresh", cache_policy=NO_CACHE)(
    federated_certificate.certify_federated_version
)


def _runner(flower_home: str, flower_bin: str) -> FlowerAppRunner:
    return FlowerAppRunner(FlowerCli(Path(flower_bin), Path(flower_home)), APP_DIR)


@flow(name="federated-train")
def federated_train(workspace: str, flower_home: str, flower_bin: str, run_name: str) -> str:
    """Train every client group on the deployment and register the served model.

    Example:
        >>> federated_train("ws", ".flower/flwr-home", ".venv-flower/bin", "r1")  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    with ws.lock():
        plan = plan_training(ws, run_name)
        run_plan(ws, plan, _runner(flower_home, flower_bin))
        return register(ws, kind="train").version


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
    with ws.lock():
        client_hash = receive_withdrawal(ws, request, reason)
        group, plan = plan_removal(ws, client_hash, f"remove-{request.request_id}", method)
        run_plan(ws, plan, _runner(flower_home, flower_bin))
        version = register(
            ws,
            kind="forget",
            request_ids=(request.request_id,),
            removed={client_hash: reason},
            method=federated.METHOD_TAGS[method],
            groups_retrained=(group,),
        )
        return version.version


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

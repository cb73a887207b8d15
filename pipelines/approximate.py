"""Forgets of a monolithic workspace: the provisional version now, the exact retrain after.

Wiring only; the logic is :mod:`unlearn_ops.workflow.approximate`.

- :func:`forget_approximately` is the forget stage of a monolithic workspace
  (:func:`pipelines.stages.forget_batch` hands it the batch): hold back, check, receive,
  remove the records, run `unlearning.method` on the served model, audit it against the
  retrain oracles, gate, commit, register a provisional version and serve it.
- `retrain-exactly` (:func:`retrain_exactly`) serves the exact retrain of every request
  served approximately so far, in one batch. Schedule it with
  :func:`exact_retrain_deployment` (an interval well inside `compliance.deadline_days`);
  a run whose gates fail raises, so Prefect marks it failed, and `audit`/`report` show
  the requests overdue once their deadline passes.
- `adopt-model` (:func:`adopt_model`) makes a team's registered model version 1 of a new
  monolithic workspace: shard the table, serve the adopted weights, evaluate, gate,
  register.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prefect import flow

from pipelines import tasks
from pipelines.sequence import admit_batch, evaluate_and_register, train_shards
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.serving.promotion import champion_accuracy
from unlearn_ops.workflow import approx_adopt, approx_versions, approximate
from unlearn_ops.workflow.membership_audit import PRIVACY_GATE
from unlearn_ops.workflow.timing import Stopwatch
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.serving.gates import GateResult
    from unlearn_ops.serving.versions import VersionInfo

__all__ = [
    "adopt_model",
    "exact_retrain_deployment",
    "forget_approximately",
    "retrain_exactly",
    "serve_exact_retrain",
]

check_method = tasks.as_task(approximate.check_method, "check-method")
read_forgotten = tasks.as_task(approximate.forgotten_records, "read-forgotten-records")
unlearn = tasks.as_task(approximate.unlearn_served_model, "unlearn-approximately")
close_provisional = tasks.as_task(approx_versions.close_provisional, "serve-provisional")
install_adopted = tasks.as_task(approx_adopt.install_adopted, "install-adopted-model")
close_exact = tasks.as_task(approx_versions.close_exact, "serve-exact-retrain")


def forget_approximately(ws: Workspace, batch: Sequence[ForgetRequest]) -> dict[str, Any]:
    """Forget a batch approximately and serve a provisional version; hold the workspace lock.

    Raises:
        UnknownRecordsError, InvalidRequestError, UnknownMethodError: refused, nothing changed.
        GateFailedError: the version is registered, not promoted; the ledger says failed.
    """
    watch = Stopwatch()
    with watch.phase("data"):
        admitted = admit_batch(ws, batch, before_check=check_method)
        if admitted.answer is not None:
            return admitted.answer
        batch = admitted.batch
        baseline = champion_accuracy(ws)
        forgotten = read_forgotten(ws, batch)
        plan = tasks.apply_batch(ws, batch)
    with watch.phase("unlearning"):
        unlearned = unlearn(ws, forgotten)

    def judged_by(gates: list[GateResult]) -> list[GateResult]:
        # The membership audit against the retrain oracles replaces the privacy gate.
        return [g for g in gates if g.gate != PRIVACY_GATE] + [approximate.oracle_gate(unlearned)]

    def close(version: VersionInfo, gates: list[GateResult]) -> None:
        close_provisional(ws, batch, version, gates, unlearned)
        tasks.mark_unsafe_versions(ws)

    names = ", ".join(r.request_id for r in batch)
    registered = evaluate_and_register(
        ws,
        watch,
        trained=[],
        baseline=baseline,
        kind="forget",
        message=f"unlearn-ops: forget {names} (approximate)",
        close=close,
        requests=batch,
        gates_of=judged_by,
        approximate_method=unlearned.method,
    )
    due = approx_versions.exact_due(ws, approx_versions.pending_exact_requests(ws))
    return {
        "version": registered.version.version,
        "provisional": True,
        "method": unlearned.method,
        "gradient_steps": unlearned.gradient_steps,
        "audit": None if unlearned.audit is None else unlearned.audit["verdict"],
        "accuracy": registered.metrics["accuracy"],
        "git_sha": registered.revision.git_sha,
        "gates": {g.gate: g.passed for g in registered.gates},
        "timings": watch.seconds,
        "requests": [r.request_id for r in batch],
        "plan": plan.to_dict(),
        "exact_retrain_due": None if due is None else due.isoformat(),
        **admitted.held(),
    }


@flow(name="retrain-exactly")
def retrain_exactly(workspace: str) -> dict[str, Any]:
    """Retrain the monolithic model without every record forgotten approximately; serve it.

    Every request served only approximately so far is served by this one retrain.

    Raises:
        GateFailedError: the retrain is registered, not promoted (the run fails).

    Example:
        >>> retrain_exactly("ws")  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    watch = Stopwatch()
    with ws.lock():
        pending = approx_versions.pending_exact_requests(ws, clients=False)
        if not pending:
            return {"noop": True, "message": approx_versions.nothing_to_retrain(ws)}
        baseline = champion_accuracy(ws)
        with watch.phase("retraining"):
            stale = tasks.stale_shards(ws)
            trained = train_shards(ws, stale)

        def close(version: VersionInfo, gates: list[GateResult]) -> None:
            close_exact(ws, pending, version, gates)
            tasks.mark_unsafe_versions(ws)

        registered = evaluate_and_register(
            ws,
            watch,
            trained=trained,
            baseline=baseline,
            kind="forget",
            message=f"unlearn-ops: exact retrain for {pending}",
            close=close,
            replayed=pending,
        )
    return {
        "version": registered.version.version,
        "exact": True,
        "requests": pending,
        "accuracy": registered.metrics["accuracy"],
        "git_sha": registered.revision.git_sha,
        "gates": {g.gate: g.passed for g in registered.gates},
        "timings": watch.seconds,
    }


def exact_retrain_deployment(
    workspace: str, *, name: str = "retrain-exactly", interval_seconds: float = 86_400.0
) -> Any:
    """A deployment of :func:`retrain_exactly` on an interval, for `prefect.serve(...)`.

    One run serves every provisional request pending then (a batch); keep the interval
    well inside `compliance.deadline_days`.
    """
    return retrain_exactly.to_deployment(
        name=name, interval=interval_seconds, parameters={"workspace": workspace}
    )


def serve_exact_retrain(workspace: str, *, interval_seconds: float) -> None:
    """Serve :func:`exact_retrain_deployment` until stopped, one run at a time."""
    from prefect import serve

    deployment = exact_retrain_deployment(workspace, interval_seconds=interval_seconds)
    serve(deployment, limit=1, print_starting_message=False)


@flow(name="adopt-model")
def adopt_model(workspace: str, weights: str, model_uri: str) -> dict[str, Any]:
    """Register an adopted model (its weights saved at `weights`) as version 1.

    Example:
        >>> adopt_model("ws", "ws/.unlearn-ops/adopted.pt", "models:/churn/3")  # doctest: +SKIP
    """
    ws = Workspace.open(workspace)
    watch = Stopwatch()
    with ws.lock():
        with watch.phase("data"):
            counts = tasks.prepare_data(ws)
            adopted = install_adopted(ws, weights, model_uri)

        def close(version: VersionInfo, gates: list[GateResult]) -> None:
            ws.registry().set_version_tag(version.version, "adopted_from", model_uri)
            tasks.promote_and_close(ws, [], version, gates)

        registered = evaluate_and_register(
            ws,
            watch,
            trained=[adopted],
            baseline=None,
            kind="train",
            message=f"unlearn-ops: adopt {model_uri}",
            close=close,
        )
    return {
        "version": registered.version.version,
        "adopted_from": model_uri,
        "records": sum(counts.values()),
        "accuracy": registered.metrics["accuracy"],
        "git_sha": registered.revision.git_sha,
        "gates": {g.gate: g.passed for g in registered.gates},
    }

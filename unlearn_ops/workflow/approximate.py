"""Forgetting in a monolithic workspace: the provisional version, its audit, its exact successor.

A monolithic workspace (`training.mode: monolithic`) is SISA with one shard of one slice:
the same recipe, flows, registry, ledger, gates and lineage; only the forget differs
(issue 14). A forget removes the records from the data as usual, then, instead of
retraining, runs `unlearning.method` (:func:`unlearn_ops.approx.base.run_method`) on the
served model with the retained and forgotten records, and audits the result against retrain
oracles: `unlearning.reference_models` models trained the same way without the forgotten
records (their checkpoints are cached by content key, like every stage checkpoint). The
version it registers is *provisional*: tagged `unlearn.exact=false`,
`unlearn.provisional=true`, `unlearn.method`, and `unlearn.approximate_requests` (the
requests it honours only approximately); the ledger's `served` entry says `approximate`.

The model file it writes keeps the data MD5 of the weights it started from, so the shard
stays stale: the exact retrain is the ordinary training of that shard on its current file.
The versions' tags, the ledger entries and the supersession are
:mod:`unlearn_ops.workflow.approx_versions`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unlearn_ops.atomic import write_atomic
from unlearn_ops.errors import UnknownMethodError
from unlearn_ops.sisa.hashing import canonical_id, derive_seed
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from unlearn_ops.deletion.requests import ForgetRequest
    from unlearn_ops.privacy.membership import MembershipAudit
    from unlearn_ops.serving.gates import GateResult

__all__ = [
    "Unlearned",
    "check_method",
    "forgotten_records",
    "oracle_gate",
    "unlearn_served_model",
]
MONOLITHIC_SHARD = 0


@dataclass(frozen=True)
class Unlearned:
    """What the approximate method did to the served model (small, serialisable).

    Attributes:
        method: the method's name.
        options: its options, as given in params.yaml (over its defaults).
        gradient_steps: the gradient steps it took.
        weights_hash: SHA-256 of the weights it produced (as served).
        parent_weights_hash: those of the model it started from.
        seconds: wall time of the method.
        audit: the membership audit against the retrain oracles (`to_dict`), or None.
    """

    method: str
    options: dict[str, Any]
    gradient_steps: int
    weights_hash: str
    parent_weights_hash: str
    seconds: float
    audit: dict[str, Any] | None = field(default=None, compare=False)


# ----------------------------------------------------------------------- the method
def check_method(workspace: Workspace) -> None:
    """Refuse, before anything is written, a method or option that `run_method` would refuse.

    Raises:
        UnknownMethodError: `unlearning.method` is not registered, or takes no such option.
    """
    from unlearn_ops.approx.base import method_defaults, registered_methods

    params = workspace.params.unlearning
    defaults = method_defaults(params.method)
    unknown = sorted(set(params.options) - set(defaults))
    if unknown:
        problem = f"unknown options {unknown}; it takes {sorted(defaults)}"
        raise UnknownMethodError(params.method, registered_methods(), problem)


def forgotten_records(workspace: Workspace, requests: Sequence[ForgetRequest]) -> pd.DataFrame:
    """The rows the requests name, read from the shard tables before they are removed.

    The method and the audit need the forgotten records' features; once `remove-records`
    ran, only the data revision before it holds them.
    """
    import pandas as pd

    ensemble = workspace.ensemble
    id_column = ensemble.columns().id_column
    wanted = {canonical_id(r) for request in requests for r in request.record_ids}
    tables = [ensemble.read_shard(s) for s in ensemble.shard_ids]
    frame = pd.concat(tables, ignore_index=True)
    return frame[frame[id_column].map(canonical_id).isin(wanted)].reset_index(drop=True)


def _tensors(workspace: Workspace, frame: pd.DataFrame) -> tuple[Any, Any]:
    import numpy as np
    import torch

    columns = workspace.ensemble.columns()
    features = frame[list(columns.feature_columns)].to_numpy(dtype=np.float32, copy=True)
    labels = frame[columns.label_column].to_numpy(dtype=np.int64, copy=True)
    return torch.from_numpy(features), torch.from_numpy(labels)


def _served_module(workspace: Workspace) -> nn.Module:
    from unlearn_ops.sisa.models import build_model
    from unlearn_ops.sisa.training import load_state

    ensemble = workspace.ensemble
    columns = ensemble.columns()
    module = build_model(workspace.params.model, len(columns.feature_columns), columns.num_classes)
    module.load_state_dict(load_state(ensemble.model_path(MONOLITHIC_SHARD).read_bytes()))
    module.eval()
    return module


def unlearn_served_model(workspace: Workspace, forgotten: pd.DataFrame) -> Unlearned:
    """Run the workspace's method on the served model; audit it; serve it in the workspace.

    Call it after `remove-records`: the retained records are the shard's current table.
    The new weights replace the shard's model file; its metadata keeps the data MD5 of the
    weights it started from, so that the shard stays stale until the exact retrain.

    Raises:
        UnknownMethodError: the method or an option is unknown (nothing written).
    """
    import copy

    import torch

    from unlearn_ops.approx.base import UnlearnData, run_method
    from unlearn_ops.sisa.training import serialize_state, weights_digest

    check_method(workspace)
    params = workspace.params
    ensemble = workspace.ensemble
    columns = ensemble.columns()
    retained = ensemble.read_shard(MONOLITHIC_SHARD)
    retained_x, retained_y = _tensors(workspace, retained)
    forgotten_x, forgotten_y = _tensors(workspace, forgotten)
    parent = _served_module(workspace)
    parent_hash = weights_digest({k: v.detach() for k, v in parent.state_dict().items()})
    torch.set_num_threads(workspace.settings.torch_threads)
    started = time.perf_counter()
    outcome = run_method(
        params.unlearning.method,
        copy.deepcopy(parent),
        UnlearnData(retained_x, retained_y, forgotten_x, forgotten_y, columns.num_classes),
        dict(params.unlearning.options),
        derive_seed(params.seed, MONOLITHIC_SHARD, "unlearn", params.unlearning.method),
    )
    seconds = time.perf_counter() - started
    model = outcome.model.eval()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    weights_hash = weights_digest(state)
    audit = _audit(workspace, model, parent, forgotten)
    previous = ensemble.served_model_info(MONOLITHIC_SHARD) or {}
    write_atomic(ensemble.model_path(MONOLITHIC_SHARD), serialize_state(state))
    info = {
        "shard_id": MONOLITHIC_SHARD,
        "stage_keys": [],
        "weights_hash": weights_hash,
        "num_records": len(retained),
        "training_hash": params.training_hash(),
        # The data the weights descend from, not the current file: the shard stays stale.
        "data_md5": previous.get("data_md5", ""),
        "approximate": {
            "method": params.unlearning.method,
            "gradient_steps": outcome.gradient_steps,
            "parent_weights_hash": parent_hash,
        },
    }
    meta_path = ensemble.model_path(MONOLITHIC_SHARD).with_suffix(".json")
    write_atomic(meta_path, json.dumps(info, indent=2) + "\n")
    return Unlearned(
        method=params.unlearning.method,
        options=dict(params.unlearning.options),
        gradient_steps=outcome.gradient_steps,
        weights_hash=weights_hash,
        parent_weights_hash=parent_hash,
        seconds=seconds,
        audit=None if audit is None else audit.to_dict(),
    )


# ----------------------------------------------------------------------- the audit
def _oracle_models(workspace: Workspace) -> list[nn.Module]:
    """Models trained like the served one, without the forgotten records, other seeds.

    Their stage checkpoints go to the workspace's store under their own content keys (the
    seed is part of the training hash), so a second audit of the same data costs nothing.
    """
    from unlearn_ops.sisa.models import build_model
    from unlearn_ops.sisa.training import train_shard

    params = workspace.params
    ensemble = workspace.ensemble
    columns = ensemble.columns()
    table = ensemble.read_shard(MONOLITHIC_SHARD)
    models = []
    for k in range(params.unlearning.reference_models):
        oracle_params = params.model_copy(update={"seed": derive_seed(params.seed, k, "oracle")})
        trained = train_shard(
            table,
            shard_id=MONOLITHIC_SHARD,
            params=oracle_params,
            columns=columns,
            store=ensemble.checkpoint_store,
            threads=workspace.settings.torch_threads,
        )
        module = build_model(params.model, len(columns.feature_columns), columns.num_classes)
        module.load_state_dict(trained.state)
        models.append(module.eval())
    return models


def _audit(
    workspace: Workspace, model: nn.Module, parent: nn.Module, forgotten: pd.DataFrame
) -> MembershipAudit | None:
    """The per-example membership audit of `model` against the retrain oracles.

    The positive control is the same test on `parent` (the served model, trained on the
    records); held-out records calibrate each target's offset and are the negative control.
    """
    import numpy as np

    from unlearn_ops.privacy.confidence import (
        AuditSamples,
        ConfidenceSample,
        module_confidences,
        split_heldout,
    )
    from unlearn_ops.privacy.membership import audit_membership

    if workspace.params.unlearning.reference_models < 2 or forgotten.empty:
        return None
    columns = workspace.ensemble.columns()
    references = _oracle_models(workspace)
    holdout = workspace.ensemble.read_holdout()

    def phi(modules: Sequence[nn.Module], frame: pd.DataFrame) -> Any:
        features = frame[list(columns.feature_columns)].to_numpy(dtype=np.float32)
        return module_confidences(modules, features, frame[columns.label_column].to_numpy())

    reference_forgotten, reference_holdout = phi(references, forgotten), phi(references, holdout)

    def samples(target: nn.Module) -> AuditSamples:
        heldout = ConfidenceSample(phi([target], holdout)[0], reference_holdout)
        calibration, control = split_heldout(heldout)
        candidates = ConfidenceSample(phi([target], forgotten)[0], reference_forgotten)
        return AuditSamples(candidates, calibration, control)

    return audit_membership(samples(model), samples(parent), seed=workspace.params.seed)


def oracle_gate(unlearned: Unlearned) -> GateResult:
    """The privacy gate of a provisional version: fails when the oracle audit says `fail`."""
    from unlearn_ops.serving.gates import ExpectationOutcome, GateResult
    from unlearn_ops.workflow.membership_audit import PRIVACY_GATE

    audit = unlearned.audit
    if audit is None:
        reason = "not run: unlearning.reference_models is 0 or nothing was forgotten"
        outcome = ExpectationOutcome(
            "membership_audit_verdict_is_not_fail", None, True, None, reason
        )
        return GateResult(PRIVACY_GATE, True, (outcome,))
    passed = audit["verdict"] != "fail"
    outcome = ExpectationOutcome(
        expectation="membership_audit_verdict_is_not_fail",
        column=None,
        success=passed,
        observed=audit,
        description=f"membership audit against retrain oracles: {audit['verdict']}: "
        f"{audit['reason']}",
    )
    return GateResult(PRIVACY_GATE, passed, (outcome,))

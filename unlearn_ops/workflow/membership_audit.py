"""Auditing a forget version for membership: reading its models and records, tagging it.

The statistics live in :mod:`unlearn_ops.privacy.membership` (pure); this module reads what
they need through the workspace's ports. A registered forget version and its parent are
read from the registry (their shard models, as served) and the lineage (their shard tables
at their own data revisions, as `unlearn-ops verify` reads them): the forgotten records are
the rows of the parent's shards that the version's shards no longer hold. A candidate in
the forget flow (the privacy gate, before it is registered) is read from the workspace's
ensemble instead. Tags go under `unlearn.privacy.*`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_ops.errors import NotAForgetVersionError as NotAForgetVersionError  # errors.py
from unlearn_ops.errors import VersionNotFoundError
from unlearn_ops.privacy.references import DEFAULT_REFERENCES
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from unlearn_ops.params import Params
    from unlearn_ops.privacy.membership import MembershipAudit
    from unlearn_ops.serving.gates import GateResult
    from unlearn_ops.serving.ports import ModelRegistry
    from unlearn_ops.sisa.ensemble import SisaEnsemble
    from unlearn_ops.sisa.training import ShardColumns

__all__ = [
    "AuditOptions",
    "NotAForgetVersionError",
    "ShardModels",
    "audit_candidate",
    "audit_shard_models",
    "audit_version",
    "ensemble_models",
    "privacy_gate",
    "tag_audit",
    "tag_gate_audit",
]

PRIVACY_GATE = "privacy"


MIN_SHARDS = 3  # a record needs at least two reference models (the other shards)


@dataclass(frozen=True)
class AuditOptions:
    """The audit's knobs (see :func:`unlearn_ops.privacy.membership.audit_membership`).

    Attributes:
        alpha: per-record level of the test.
        min_control_tpr: the positive control's least TPR at 1% FPR for a pass.
        resamples: bootstrap resamples per interval.
        seed: seed of the bootstraps and of the reference models' inclusion plan.
        references: reference models trained for the online test
            (:mod:`unlearn_ops.privacy.references`); 0: the offline test against the
            other shards' models only.
        cache_dir: where the reference models' scores are cached by content key (None:
            the workspace's `.unlearn-ops/privacy-references/`, or no cache outside one).
    """

    alpha: float = 0.01
    min_control_tpr: float = 0.10
    resamples: int = 1000
    seed: int = 0
    references: int = DEFAULT_REFERENCES
    cache_dir: Path | None = None


@dataclass(frozen=True)
class ShardModels:
    """One version as the audit sees it: its shard models and (some of) its shard tables."""

    modules: list[torch.nn.Module]
    tables: Mapping[int, pd.DataFrame]


def _served_modules(registry: ModelRegistry, version: str) -> list[torch.nn.Module]:
    loaded = registry.load_pyfunc(version)
    # The fake registry returns the EnsemblePredictor; MLflow wraps it in its pyfunc.
    predictor = loaded if hasattr(loaded, "modules") else loaded.unwrap_python_model().predictor
    return list(predictor.modules)


def _table_at(workspace: Workspace, shard_id: int, sha: str) -> pd.DataFrame:
    import pandas as pd

    data = workspace.lineage().read_at_revision(f"data/shards/shard-{shard_id:03d}.parquet", sha)
    return pd.read_parquet(io.BytesIO(data))


def _registered(workspace: Workspace, version: str, shard_ids: Sequence[int]) -> ShardModels:
    info = workspace.find_version(version)
    sha = info.tag("git_sha")
    tables = {s: _table_at(workspace, s, sha) for s in shard_ids}
    return ShardModels(_served_modules(workspace.registry(), info.version), tables)


def audit_shard_models(
    columns: ShardColumns,
    new: ShardModels,
    parent: ShardModels,
    holdout: pd.DataFrame,
    options: AuditOptions,
    params: Params | None = None,
) -> MembershipAudit | None:
    """Audit the records of `parent`'s tables that `new`'s tables lost (None: there are none).

    Each forgotten record is tested in the model of its shard, against the other shards'
    models and (with `params` and ``options.references > 0``) reference models trained
    with and without it, in both versions (the parent's is the positive control); the
    held-out records are the negative control and calibrate each shard model's offset.
    """
    import numpy as np
    import pandas as pd

    from unlearn_ops.privacy.confidence import ExtraReferences, module_confidences, shard_samples
    from unlearn_ops.privacy.membership import audit_membership
    from unlearn_ops.sisa.hashing import canonical_id

    features = list(columns.feature_columns)
    gone, kept_rows, sizes, shards = [], [], [], []
    for shard_id, before in sorted(parent.tables.items()):
        kept = set(new.tables[shard_id][columns.id_column].map(canonical_id))
        lost = ~before[columns.id_column].map(canonical_id).isin(kept)
        if lost.any():
            # Only the shards that lost records: the candidate (all shards at hand) and
            # the registered version (the retrained shards) train the same references.
            kept_rows.append(before[~lost])
            sizes.append(len(before))
        gone.append(before[lost])
        shards += [shard_id] * int(lost.sum())
    forgotten = pd.concat(gone, ignore_index=True) if gone else holdout.iloc[:0]
    if forgotten.empty:
        return None
    x_gone = forgotten[features].to_numpy(dtype=np.float32)
    y_gone = forgotten[columns.label_column].to_numpy()
    x_held = holdout[features].to_numpy(dtype=np.float32)
    y_held = holdout[columns.label_column].to_numpy()
    extra = None
    # The online test reads its null off the calibration half of the held-out records: it
    # needs 1/alpha of them, else it falls back to the offline test (no models to train).
    enough = len(holdout) // 2 >= math.ceil(1.0 / options.alpha)
    if params is not None and options.references > 0 and enough:
        from unlearn_ops.privacy.references import reference_confidences

        audited = pd.concat([forgotten, holdout], ignore_index=True)
        trained = reference_confidences(
            audited,
            pd.concat(kept_rows, ignore_index=True),
            params=params,
            columns=columns,
            shard_size=round(float(np.mean(sizes))),
            models=options.references,
            seed=options.seed,
            cache_dir=options.cache_dir,
        )
        count = len(forgotten)
        extra = ExtraReferences(
            trained.phi[:, :count],
            trained.inside[:, :count],
            trained.phi[:, count:],
            trained.inside[:, count:],
        )

    def samples(models: ShardModels) -> Any:
        return shard_samples(
            module_confidences(models.modules, x_gone, y_gone),
            shards,
            module_confidences(models.modules, x_held, y_held),
            extra,
        )

    return audit_membership(
        samples(new),
        samples(parent),
        alpha=options.alpha,
        min_control_tpr=options.min_control_tpr,
        resamples=options.resamples,
        seed=options.seed,
    )


def _in_workspace(workspace: Workspace, options: AuditOptions | None) -> AuditOptions:
    """The options, with the workspace's reference cache unless they name one."""
    options = options or AuditOptions()
    if options.cache_dir is None:
        cache = workspace.root / ".unlearn-ops" / "privacy-references"
        options = dataclasses.replace(options, cache_dir=cache)
    return options


def audit_version(
    workspace: Workspace, version: str, options: AuditOptions | None = None, *, tag: bool = True
) -> MembershipAudit:
    """Audit a registered forget version against its parent; tag it (`unlearn.privacy.*`).

    Raises:
        VersionNotFoundError: no such version.
        NotAForgetVersionError: not a forget version, its parent is gone, or it forgot
            no record of its parent's shards.
    """
    import pandas as pd

    options = _in_workspace(workspace, options)
    registry = workspace.registry()
    info = registry.get_version(version)
    if info.tag("kind") != "forget":
        kind = info.tag("kind") or "unknown"
        raise NotAForgetVersionError(info.version, f"it is a `{kind}` version")
    if info.tag("engine") == "flower":
        raise NotAForgetVersionError(
            info.version,
            "it is a federated model: the removed client's records stay at its site, and the "
            "membership audit needs them",
            f"its exactness is certified instead: `unlearn-ops federation certify "
            f"{info.version} --flower-home HOME`",
        )
    parent = info.tag("parent_version")
    if not parent:
        raise NotAForgetVersionError(info.version, "it records no parent version")
    if workspace.params.sisa.shards < MIN_SHARDS:
        raise NotAForgetVersionError(
            info.version,
            f"the ensemble has {workspace.params.sisa.shards} shard(s)",
            f"the audit needs at least {MIN_SHARDS} (each record's references are the "
            "other shards' models)",
        )
    shard_ids = sorted(int(s) for s in json.loads(info.tag("shards_retrained") or "[]"))
    try:
        before = _registered(workspace, parent, shard_ids)
    except VersionNotFoundError as exc:
        raise NotAForgetVersionError(
            info.version, f"its parent version {parent} was deleted (purged)"
        ) from exc
    after = _registered(workspace, info.version, shard_ids)
    data = workspace.lineage().read_at_revision("data/holdout.parquet", info.tag("git_sha"))
    holdout = pd.read_parquet(io.BytesIO(data))
    columns = workspace.ensemble.columns()
    audit = audit_shard_models(columns, after, before, holdout, options, workspace.params)
    if audit is None:
        raise NotAForgetVersionError(info.version, "it removed no record of its parent")
    if tag:
        tag_audit(registry, info.version, audit)
    return audit


def ensemble_models(ensemble: SisaEnsemble) -> ShardModels:
    """The shard models (fresh modules, from the model files) and tables of an ensemble."""
    from unlearn_ops.sisa.models import build_model
    from unlearn_ops.sisa.training import load_state

    columns = ensemble.columns()
    modules = []
    for shard_id in ensemble.shard_ids:
        module = build_model(
            ensemble.params.model, len(columns.feature_columns), columns.num_classes
        )
        module.load_state_dict(load_state(ensemble.model_path(shard_id).read_bytes()))
        modules.append(module)
    return ShardModels(modules, {s: ensemble.read_shard(s) for s in ensemble.shard_ids})


def audit_candidate(
    workspace: Workspace, options: AuditOptions | None = None
) -> MembershipAudit | None:
    """Audit the workspace's ensemble (a forget not yet registered) against its parent.

    The parent is the last registered version (`registry.json`). None when there is no
    parent or the ensemble forgot none of its records (a training, not a forget).
    """
    record = workspace.read_json(workspace.registry_path) or {}
    parent = record.get("version")
    if not parent:
        return None
    ensemble = workspace.ensemble
    columns = ensemble.columns()
    new = ensemble_models(ensemble)
    before = _registered(workspace, str(parent), ensemble.shard_ids)
    holdout = ensemble.read_holdout()
    options = _in_workspace(workspace, options)
    return audit_shard_models(columns, new, before, holdout, options, workspace.params)


def privacy_gate(workspace: Workspace, options: AuditOptions | None = None) -> GateResult | None:
    """The privacy gate of a forget: fails when the membership verdict is `fail`.

    An `inconclusive` verdict passes the gate (the test had no power; nothing was shown to
    leak) and says so in its outcome, as does an ensemble of fewer than 3 shards (no
    references to test against). None when the candidate forgot nothing.
    """
    from unlearn_ops.serving.gates import ExpectationOutcome, GateResult

    if workspace.params.sisa.shards < MIN_SHARDS:
        reason = f"not run: {workspace.params.sisa.shards} shard(s), the audit needs {MIN_SHARDS}"
        outcome = ExpectationOutcome(
            "membership_audit_verdict_is_not_fail", None, True, None, reason
        )
        return GateResult(PRIVACY_GATE, True, (outcome,))
    audit = audit_candidate(workspace, options)
    if audit is None:
        return None
    outcome = ExpectationOutcome(
        expectation="membership_audit_verdict_is_not_fail",
        column=None,
        success=audit.verdict != "fail",
        observed=audit.to_dict(),
        description=f"membership audit: {audit.verdict}: {audit.reason}",
    )
    return GateResult(PRIVACY_GATE, audit.verdict != "fail", (outcome,))


def tag_audit(registry: ModelRegistry, version: str, audit: MembershipAudit) -> None:
    """Write the audit's `unlearn.privacy.*` tags on `version`."""
    for key, value in audit.tags().items():
        registry.set_version_tag(version, key, value)


def tag_gate_audit(registry: ModelRegistry, version: str, gates: Sequence[GateResult]) -> bool:
    """Copy the privacy gate's audit into the version's `unlearn.privacy.*` tags.

    Returns:
        Whether the privacy gate ran (and tags were written).
    """
    from unlearn_ops.privacy.membership import audit_tags

    for gate in gates:
        observed = gate.outcomes[0].observed if gate.outcomes else None
        if gate.gate == PRIVACY_GATE and isinstance(observed, dict):
            for key, value in audit_tags(observed).items():
                registry.set_version_tag(version, key, value)
            return True
    return False

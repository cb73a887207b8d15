"""Deletion-safe rollback: which versions may be served again, and how to go back to one.

A deletion is *recorded* once every record of its request is forgotten in the workspace
(ledger requests whose hashes are all in `forgotten.json`). A version is *safe* when its
cumulative `unlearn.honoured_requests` holds every recorded deletion; the others were
trained on records forgotten since and are never served again (DESIGN: aliases). A
provisional version of a monolithic workspace counts as honouring its requests
(approximately) until the exact retrain supersedes it; from then on it is unsafe too.
Forgetting is monotonic (`forgotten.json` only grows), so a version once unsafe stays so:
:func:`mark_unsafe_versions` tags them once, and :func:`unlearn_ops.serving.promotion.promote`
refuses them whatever the path.

A rollback moves `champion` to a safe earlier version and makes the workspace that
version again (its params.yaml and shard models, restored from its git commit and the DVC
cache; the data stays as it is, which for a safe version is its own). An unsafe target is
refused, or, with `replay`, rebuilt: its params.yaml restored over the current data, then
every shard whose model differs retrains from the content-addressed checkpoints (shards
whose data did not change since the target resume with every stage cached), and the
result is registered as a new `replay` version derived from the target. Re-sharding (another
S, R, salt, seed or dataset) is a different operation and is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from unlearn_ops.atomic import write_atomic
from unlearn_ops.errors import RollbackError, UnsafeVersionError
from unlearn_ops.params import Params
from unlearn_ops.serving.promotion import honoured_requests, missing_deletions
from unlearn_ops.serving.versions import CHAMPION, PREVIOUS
from unlearn_ops.workflow.approx_tags import exactly_honoured
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.serving.versions import VersionInfo

__all__ = [
    "HONOURS_ALL_TAG",
    "SUPERSEDED_BY_TAG",
    "RollbackPlan",
    "deletions_recorded",
    "mark_unsafe_versions",
    "plan_rollback",
    "record_rollback",
    "restore_settings",
    "restore_version",
    "unsafe_versions",
]

# Short keys of the `unlearn.*` tags of a version that misses a recorded deletion.
HONOURS_ALL_TAG = "honours_all_deletions"
SUPERSEDED_BY_TAG = "superseded_by_request"

Action = Literal["noop", "move", "replay"]


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback will do; made by :func:`plan_rollback`, which changes nothing.

    Attributes:
        action: `noop` (the target is champion and safe), `move` (restore a safe version
            and point `champion` at it) or `replay` (rebuild the target with the deletions
            it misses, as a new version).
        target: the version rolled back to.
        champion: the version `champion` points at now.
        missing: recorded deletions the target does not honour (what a replay applies).
        git_sha: the target's data revision.
        params_text: the target's params.yaml, as committed.
        message: the plan in words.
    """

    action: Action
    target: VersionInfo
    champion: str
    missing: tuple[str, ...]
    git_sha: str
    params_text: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "action": self.action,
            "target": self.target.version,
            "champion": self.champion,
            "missing": list(self.missing),
            "git_sha": self.git_sha,
            "message": self.message,
        }


def deletions_recorded(workspace: Workspace) -> list[str]:
    """Every request whose records are all forgotten in the workspace, oldest first."""
    return honoured_requests(workspace)


def unsafe_versions(workspace: Workspace) -> dict[str, list[str]]:
    """Version -> the recorded deletions it does not honour, for every unsafe version."""
    recorded = deletions_recorded(workspace)
    found = {}
    for info in workspace.registry().versions():
        missing = missing_deletions(exactly_honoured(info), recorded)
        if missing:
            found[info.version] = missing
    return found


def mark_unsafe_versions(workspace: Workspace) -> list[str]:
    """Tag every unsafe version `unlearn.honours_all_deletions=false` (once).

    `unlearn.superseded_by_request` names the first recorded deletion it misses, as found
    when it was marked; versions marked before keep their tags (being unsafe is final).

    Returns:
        The versions marked by this call.
    """
    registry = workspace.registry()
    recorded = deletions_recorded(workspace)
    marked = []
    for info in registry.versions():
        missing = missing_deletions(exactly_honoured(info), recorded)
        if not missing or info.tag(HONOURS_ALL_TAG) == "false":
            continue
        registry.set_version_tag(info.version, SUPERSEDED_BY_TAG, missing[0])
        registry.set_version_tag(info.version, HONOURS_ALL_TAG, "false")
        marked.append(info.version)
    return marked


def _default_target(workspace: Workspace, champion: str) -> VersionInfo:
    """The `previous` alias, else the newest earlier version whose gates passed."""
    registry = workspace.registry()
    previous = registry.alias_version(PREVIOUS)
    if previous is not None and previous != champion:
        return registry.get_version(previous)
    earlier = [
        info
        for info in registry.versions()
        if int(info.version) < int(champion) and info.gates_passed
    ]
    if not earlier:
        raise RollbackError(
            "an earlier version",
            f"version {champion} is champion and no earlier version passed its gates",
            "name a version with --to (see `unlearn-ops versions`)",
        )
    return earlier[-1]


def _resharding(current: Params, target: Params) -> list[str]:
    """What differs between two params in how records are split into shard files."""
    pairs = {
        "seed": (current.seed, target.seed),
        "sisa.shards": (current.sisa.shards, target.sisa.shards),
        "sisa.slices": (current.sisa.slices, target.sisa.slices),
        "sisa.salt": (current.sisa.salt, target.sisa.salt),
        "dataset": (current.dataset, target.dataset),
    }
    return [
        f"{key} {new!r} (workspace: {old!r})" for key, (old, new) in pairs.items() if old != new
    ]


def _shards_trained_elsewhere(workspace: Workspace, sha: str) -> list[int]:
    """Shards whose model at `sha` was trained on another file than the current one."""
    ensemble = workspace.ensemble
    lineage = workspace.lineage()
    differ = []
    for shard_id in ensemble.shard_ids:
        info = json.loads(lineage.read_git_file(sha, f"models/shard-{shard_id:03d}.json"))
        with ensemble.shard_path(shard_id).open("rb") as file:
            digest = hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False))
        if info.get("data_md5") != digest.hexdigest():
            differ.append(shard_id)
    return differ


def plan_rollback(
    workspace: Workspace, to: str | None = None, *, replay: bool = False
) -> RollbackPlan:
    """Decide what rolling back to `to` does; changes nothing.

    Args:
        workspace: the workspace.
        to: a version or alias; the `previous` alias (else the newest earlier version
            whose gates passed) when None.
        replay: rebuild a target that misses deletions instead of refusing it.

    Raises:
        VersionNotFoundError: no such version or alias (VersionPurgedError: purged).
        UnsafeVersionError: the target misses a recorded deletion and `replay` is off.
        RollbackError: no champion, no earlier version, a target whose gates failed, whose
            shards were split otherwise, or whose data differs (without `replay`).
    """
    import yaml

    registry = workspace.registry()
    champion = registry.alias_version(CHAMPION)
    if champion is None:
        train = "unlearn-ops federation train" if workspace.is_federation else "unlearn-ops train"
        raise RollbackError(
            to or "an earlier version", "no version is champion yet", f"run `{train}`"
        )
    target = _default_target(workspace, champion) if to is None else workspace.find_version(to)
    name = f"version {target.version}"
    # A provisional version honours its requests approximately until superseded (issue 14).
    recorded = deletions_recorded(workspace)
    missing = tuple(missing_deletions(exactly_honoured(target), recorded))
    if target.version == champion and not missing:
        return RollbackPlan(
            action="noop",
            target=target,
            champion=champion,
            missing=(),
            git_sha=target.tag("git_sha"),
            params_text="",
            message=f"version {champion} is champion already and honours every deletion; "
            "nothing to do",
        )
    if target.tag("engine") == "flower":
        return _plan_federated(workspace, target, champion, missing)
    if missing and not replay:
        raise UnsafeVersionError(target.version, missing, champion)
    sha = target.tag("git_sha")
    if not sha:
        raise RollbackError(name, "it records no data revision (unlearn.git_sha)")
    params_text = workspace.lineage().read_git_file(sha, "params.yaml")
    target_params = Params.from_mapping(
        yaml.safe_load(params_text), source=f"params.yaml of {name} (git {sha[:12]})"
    )
    differences = _resharding(workspace.params, target_params)
    if differences:
        raise RollbackError(
            name,
            f"its shards were split otherwise: {'; '.join(differences)}",
            "re-sharding is a different operation: retrain with `unlearn-ops train` instead",
        )
    if missing:
        why = f"replaying {', '.join(missing)}"
    else:
        # Safe: served again as it is, if it was served and its models fit today's data.
        problem = ""
        if not target.gates_passed:
            problem = "its gates failed, so it was never served"
        elif _shards_trained_elsewhere(workspace, sha):
            problem = "its shard models were trained on other data than the workspace holds"
        if not problem:
            return RollbackPlan(
                action="move",
                target=target,
                champion=champion,
                missing=(),
                git_sha=sha,
                params_text=params_text,
                message=f"{name} honours every deletion: champion moves to it from version "
                f"{champion}",
            )
        if not replay:
            raise RollbackError(
                name,
                problem,
                f"rebuild it: `unlearn-ops rollback --to {target.version} --replay`",
            )
        why = f"no deletion to replay, but {problem}"
    return RollbackPlan(
        action="replay",
        target=target,
        champion=champion,
        missing=missing,
        git_sha=sha,
        params_text=params_text,
        message=f"rebuild {name} on the current data as a new version ({why}); champion "
        f"stays at version {champion} unless the new version passes its gates",
    )


def _plan_federated(
    workspace: Workspace, target: VersionInfo, champion: str, missing: tuple[str, ...]
) -> RollbackPlan:
    """A federated target: moved back to as it is, or refused (a federation is not replayed)."""
    from unlearn_ops.workflow.federated_rollback import served_at

    name = f"version {target.version}"
    if missing:
        raise RollbackError(
            name,
            f"it does not honour {', '.join(missing)}, and a federation is not replayed here "
            "(its clients' data stays at their sites)",
            "train the federation again (`unlearn-ops federation train`): its clients are "
            "the current members, so every removal stays",
        )
    served_at(workspace, target)  # refuses a target that cannot be served as it was
    return RollbackPlan(
        action="move",
        target=target,
        champion=champion,
        missing=(),
        git_sha=target.tag("git_sha"),
        params_text="",
        message=f"{name} honours every deletion and client removal: champion moves to it "
        f"from version {champion} (its groups served again; the membership stays)",
    )


def record_rollback(workspace: Workspace, plan: RollbackPlan) -> str:
    """Record the rolled-back workspace as a revision; its sha."""
    from unlearn_ops.workflow.revisions import record_workspace_revision

    return record_workspace_revision(
        workspace, f"unlearn-ops: roll back to version {plan.target.version}"
    )


def _write_workspace_params(workspace: Workspace, params_text: str) -> Workspace:
    """Write params.yaml (and dvc.yaml rendered from it) and reopen the workspace."""
    from unlearn_ops.params import load_params
    from unlearn_ops.workflow.dvc_pipeline import sync_dvc_yaml

    workspace.params_path.write_text(params_text, encoding="utf-8")
    sync_dvc_yaml(workspace.root, load_params(workspace.params_path))
    return workspace.reopen()


def _point_registry_at(workspace: Workspace, plan: RollbackPlan) -> None:
    """registry.json: the workspace state is (or derives from) the target version."""
    workspace.write_json(
        workspace.registry_path,
        {
            "model_name": workspace.model_name,
            "version": plan.target.version,
            "git_sha": plan.git_sha,
        },
    )


def restore_version(workspace: Workspace, plan: RollbackPlan) -> Workspace:
    """Make the workspace the (safe) target again: its params, shard models and metrics.

    Everything is read first (models from the DVC cache or remote, the rest from git),
    then written; the shard files are not touched (a safe target was trained on them).

    Returns:
        The workspace reopened with the target's params.

    Raises:
        LineageError: the target's files are no longer in git or the DVC cache.
    """
    if plan.action != "move":
        raise RollbackError(f"version {plan.target.version}", f"the plan is to {plan.action}")
    if plan.target.tag("engine") == "flower":
        from unlearn_ops.workflow.federated_rollback import restore_served

        restore_served(workspace, plan.target)
        return workspace
    ensemble = workspace.ensemble
    lineage = workspace.lineage()
    models = {}
    for shard_id in ensemble.shard_ids:
        stem = f"models/shard-{shard_id:03d}"
        models[shard_id] = (
            lineage.read_at_revision(f"{stem}.pt", plan.git_sha),
            lineage.read_git_file(plan.git_sha, f"{stem}.json"),
        )
    metrics = lineage.read_git_file(plan.git_sha, "metrics.json")
    for shard_id, (weights, info) in models.items():
        write_atomic(ensemble.model_path(shard_id), weights)
        write_atomic(ensemble.model_path(shard_id).with_suffix(".json"), info.encode())
    # metrics.json is a plain tracked file, readable like the one `evaluate` writes.
    write_atomic(workspace.metrics_path, metrics.encode(), mode=0o644)
    _point_registry_at(workspace, plan)
    return _write_workspace_params(workspace, plan.params_text)


def restore_settings(workspace: Workspace, plan: RollbackPlan) -> Workspace:
    """Before a replay: the target's params.yaml over the current data; it is the parent.

    Afterwards every shard whose model was trained on other data or other params is stale
    (:meth:`~unlearn_ops.sisa.ensemble.SisaEnsemble.stale_shards`) and resumes from the
    checkpoints of the target's params.

    Returns:
        The workspace reopened with the target's params.
    """
    if plan.action != "replay":
        raise RollbackError(f"version {plan.target.version}", f"the plan is to {plan.action}")
    _point_registry_at(workspace, plan)
    return _write_workspace_params(workspace, plan.params_text)

"""Rolling a federation back (issue 13): `champion` to an earlier federated version.

A federated version is served again as it was registered. Its served groups
(`federation/served.json` at its revision) must name run folders still in the workspace,
and each group's final model must hash to the version's `unlearn.weights`. Then
`served.json` is restored, so the next removal plans from the groups the champion serves.
The membership (`federation.json`) is not rolled back: removed clients stay removed.

The caller (:func:`unlearn_ops.workflow.rollback.plan_rollback`) refuses a target that
misses a recorded deletion or client removal. A federation is never replayed here: its
clients' data stays at their sites, so the way forward is to train the federation again.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from unlearn_ops.errors import LineageError, RollbackError
from unlearn_ops.federated.client import weights_hash
from unlearn_ops.federated.groups import decode_weights
from unlearn_ops.workflow.federated import federation_folder, write_state
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.serving.versions import VersionInfo

__all__ = ["restore_served", "served_at"]

TRAIN_AGAIN = "train the federation again (`unlearn-ops federation train`)"


def served_at(workspace: Workspace, target: VersionInfo) -> dict[str, Any]:
    """The target's `served.json`, after checking that it can be served again as it was.

    Raises:
        RollbackError: its gates failed; it records no revision; its revision holds no
            served groups; a group's model is gone from the workspace (purged) or is not the
            model the version registered.
    """
    name = f"version {target.version}"
    if not target.gates_passed:
        raise RollbackError(name, "its gates failed, so it was never served")
    sha = target.tag("git_sha")
    if not sha:
        raise RollbackError(name, "it records no revision (unlearn.git_sha)")
    try:
        served = json.loads(workspace.lineage().read_git_file(sha, "federation/served.json"))
        groups: dict[str, dict[str, Any]] = served["groups"]
    except (LineageError, ValueError, KeyError, TypeError) as exc:
        raise RollbackError(name, f"its revision {sha[:12]} holds no served groups") from exc
    registered = json.loads(target.tag("weights") or "{}")
    runs = federation_folder(workspace) / "runs"
    for group, facts in sorted(groups.items(), key=lambda item: int(item[0])):
        where = f"{facts['run']}/{facts['final']}"
        path = runs / where
        if not path.is_file():
            raise RollbackError(
                name, f"the model of group {group} ({where}) is gone (purged)", TRAIN_AGAIN
            )
        if weights_hash(decode_weights(path.read_bytes())) != registered.get(group):
            raise RollbackError(
                name, f"the model of group {group} ({where}) is not the one it registered"
            )
    return {"groups": groups}


def restore_served(workspace: Workspace, target: VersionInfo) -> None:
    """Serve the target's groups again: its `served.json`, checked (:func:`served_at`)."""
    write_state(workspace, "served.json", served_at(workspace, target))

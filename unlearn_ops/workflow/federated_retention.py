"""Retention for a federation: the run folders that still hold a removed client's influence.

A client's removal leaves its traces in the federation's runs (`WS/federation/runs/NAME/`):
the round checkpoints of every group it trained in, its own stored updates
(`updates/round-RRR/partition-PPP.npz`, FedEraser's history), the models of a FedEraser
removal (rebuilt from that history) and of a certificate run made while it was a member.
They are kept `compliance.retention_days`, like the versions that hold it; once `purge`
closes the request, the group folders that hold it go, unless the served model or a kept
version still names them (`served.json`, `unlearn.federation.runs`), and a run folder goes
whole when none of its groups is left. Clients and folders are named by partition and
group only: no client id is read or written here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from unlearn_ops.workflow.workspace import Workspace

__all__ = ["folders_holding_removed_clients"]


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _removed_partitions(state: Mapping[str, Any], request_ids: set[str]) -> dict[str, set[int]]:
    """Group (text) -> partitions of the clients that `request_ids` removed."""
    clients = {c["client_hash"]: c for c in state.get("clients", [])}
    removed: dict[str, set[int]] = {}
    for entry in state.get("removed", []):
        client = clients.get(entry["client_hash"])
        if client is not None and request_ids & set(entry.get("requests", [])):
            removed.setdefault(str(client["group"]), set()).add(int(client["partition_id"]))
    return removed


def _members(state: Mapping[str, Any]) -> dict[str, set[int]]:
    """Group (text) -> the partition of every client ever placed in it."""
    members: dict[str, set[int]] = {}
    for client in state.get("clients", []):
        members.setdefault(str(client["group"]), set()).add(int(client["partition_id"]))
    return members


def folders_holding_removed_clients(
    workspace: Workspace,
    request_ids: Iterable[str],
    kept_runs: Iterable[Mapping[str, str]],
) -> list[str]:
    """Folders under `WS/federation/runs/` that hold a client `request_ids` removed.

    Args:
        workspace: the workspace (no federation: nothing).
        request_ids: the client removals whose retention ended.
        kept_runs: group -> run of each model that stays: the served groups and every kept
            version's `unlearn.federation.runs`.

    Returns:
        Paths relative to the workspace: `federation/runs/NAME` for a run none of whose
        groups is kept, else `federation/runs/NAME/group-GGG` per group that goes.
    """
    state = _read(workspace.federation_dir / "federation.json")
    removed = _removed_partitions(state, set(request_ids))
    if not removed:
        return []
    members = _members(state)
    kept = {(str(group), run) for runs in kept_runs for group, run in runs.items()}
    folders: list[str] = []
    runs = workspace.federation_dir / "runs"
    for run in sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []:
        plan = _read(run / "plan.json")
        history = plan.get("history", {})
        going: list[str] = []
        for group, partitions in sorted(plan.get("groups", {}).items()):
            # A FedEraser group was rebuilt from the history of every member of its group.
            held = members.get(group, set()) if group in history else set(partitions)
            if held & removed.get(group, set()) and (group, run.name) not in kept:
                going.append(group)
        relative = run.relative_to(workspace.root)
        if going and len(going) == len(plan.get("groups", {})):
            folders.append(str(relative))
        else:
            folders += [str(relative / f"group-{int(g):03d}") for g in going]
    return folders

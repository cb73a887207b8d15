"""The provisional versions of a monolithic workspace and the exact retrain that supersedes them.

A provisional version (made by :mod:`unlearn_ops.workflow.approximate`) is tagged
`unlearn.exact=false`, `unlearn.provisional=true`, `unlearn.method` (with its options and
gradient steps) and `unlearn.approximate_requests`: the requests it honours only
approximately (this batch, and those of earlier provisional versions its model descends
from). Its ledger entries say `served` with `approximate: true`. The exact retrain's
version is tagged `unlearn.exact=true`; once it is champion, each provisional version whose
approximate requests it honours gets `unlearn.superseded_by`, and from then on counts as
holding those requests' records (promotion refuses it; purge deletes it after retention).
Reading those tags is :mod:`unlearn_ops.workflow.approx_tags` (pure).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from unlearn_ops.workflow.approx_tags import (
    APPROXIMATE_REQUESTS_TAG,
    approximate_requests,
    is_provisional,
    superseded_by,
)
from unlearn_ops.workflow.gated_promotion import promote_or_record_failure
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.deletion.requests import ForgetRequest
    from unlearn_ops.serving.gates import GateResult
    from unlearn_ops.serving.ports import ModelRegistry
    from unlearn_ops.serving.versions import VersionInfo
    from unlearn_ops.workflow.approximate import Unlearned

__all__ = [
    "close_exact",
    "close_provisional",
    "exact_due",
    "nothing_to_retrain",
    "pending_exact_requests",
    "supersede_provisional",
    "tag_provisional",
]


def tag_provisional(
    registry: ModelRegistry,
    version: str,
    unlearned: Unlearned,
    approximate: Sequence[str],
) -> None:
    """Write the tags of a provisional version (the registry adds the `unlearn.` prefix)."""
    tags = {
        "exact": "false",
        "provisional": "true",
        "method": unlearned.method,
        "method.options": json.dumps(unlearned.options, sort_keys=True),
        "method.gradient_steps": str(unlearned.gradient_steps),
        "method.parent_weights_hash": unlearned.parent_weights_hash,
        APPROXIMATE_REQUESTS_TAG: json.dumps(list(approximate)),
    }
    for key, value in tags.items():
        registry.set_version_tag(version, key, value)


def pending_exact_requests(workspace: Workspace, *, clients: bool | None = None) -> list[str]:
    """Requests served only approximately so far: what an exact retrain must serve.

    `clients`: True for federation clients removed by FedEraser only (their group's exact
    removal serves them), False for records only (the monolithic retrain), None for both.
    """
    removals = workspace.client_removal_requests() if clients is not None else set()
    return [
        state.request_id
        for state in workspace.ledger.requests().values()
        if state.approximate and (clients is None or (state.request_id in removals) == clients)
    ]


def nothing_to_retrain(workspace: Workspace) -> str:
    """What `retrain-exactly` says when no record waits for it."""
    if pending_exact_requests(workspace, clients=True):
        return (
            "no record waits for an exact retrain; the clients FedEraser removed wait for "
            "theirs: `unlearn-ops federation remove-exactly`"
        )
    return "no request waits for an exact retrain"


def exact_due(workspace: Workspace, request_ids: Sequence[str]) -> datetime | None:
    """The earliest legal deadline among `request_ids` (received + compliance.deadline_days)."""
    from unlearn_ops.timestamps import parse_datetime_or_none as parse_time

    states = workspace.ledger.requests()
    days = timedelta(days=workspace.params.compliance.deadline_days)
    times = [parse_time(states[r].received_at) for r in request_ids if r in states]
    due = [t + days for t in times if t is not None]
    return min(due) if due else None


def close_provisional(
    workspace: Workspace,
    requests: Sequence[ForgetRequest],
    version: VersionInfo,
    gates: Sequence[GateResult],
    unlearned: Unlearned,
) -> str:
    """Tag `version` provisional, promote it if its gates passed, record `served` (approximate).

    Raises:
        GateFailedError: a gate failed; `champion` stays where it was, the ledger says failed.
    """
    from unlearn_ops.workflow.revisions import record_revision

    registry = workspace.registry()
    # Requests that earlier provisional versions served approximately stay approximate:
    # this model descends from theirs.
    approximate = [*pending_exact_requests(workspace), *(r.request_id for r in requests)]
    tag_provisional(registry, version.version, unlearned, list(dict.fromkeys(approximate)))
    version = registry.get_version(version.version)
    facts = promote_or_record_failure(workspace, [r.request_id for r in requests], version, gates)
    due = exact_due(workspace, [r.request_id for r in requests])
    for request in requests:
        workspace.ledger.append(
            "served",
            request.request_id,
            version=version.version,
            version_facts=facts,
            approximate=True,
            method=unlearned.method,
            exact_due=None if due is None else due.isoformat(),
        )
    record_revision(workspace, f"unlearn-ops: version {version.version} is champion (provisional)")
    return version.version


def close_exact(
    workspace: Workspace,
    request_ids: Sequence[str],
    version: VersionInfo,
    gates: Sequence[GateResult],
) -> str:
    """Promote the exact retrain if its gates passed; supersede the provisional versions.

    The ledger gets a second `served` entry for each request (no longer approximate); the
    provisional versions whose approximate requests it honours get `unlearn.superseded_by`.

    Raises:
        GateFailedError: a gate failed; the provisional champion stays, the ledger says failed.
    """
    from unlearn_ops.workflow.revisions import record_revision

    registry = workspace.registry()
    registry.set_version_tag(version.version, "exact", "true")
    version = registry.get_version(version.version)
    facts = promote_or_record_failure(workspace, request_ids, version, gates, label="exact retrain")
    supersede_provisional(registry, version)
    for request_id in request_ids:
        workspace.ledger.append(
            "served", request_id, version=version.version, version_facts=facts, exact=True
        )
    record_revision(workspace, f"unlearn-ops: exact retrain {version.version} is champion")
    return version.version


def supersede_provisional(
    registry: ModelRegistry, version: VersionInfo, still_approximate: Sequence[str] = ()
) -> list[str]:
    """Tag `unlearn.superseded_by` on the provisional versions `version` replaces exactly.

    A provisional version is replaced when `version` honours every request it served
    approximately and honours none of them approximately itself (`still_approximate`: a
    federated version may keep another group's FedEraser model). Returns those versions.
    """
    honoured, pending = set(version.honoured_requests), set(still_approximate)
    replaced = []
    for other in registry.versions():
        approximate = set(approximate_requests(other))
        if (
            other.version != version.version
            and is_provisional(other)
            and superseded_by(other) is None
            and approximate <= honoured
            and not approximate & pending
        ):
            registry.set_version_tag(other.version, "superseded_by", version.version)
            replaced.append(other.version)
    return replaced

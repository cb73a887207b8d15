"""Promote a version whose gates passed, or record in the ledger that it failed them.

Every path that ends in a new version (sharded, provisional, exact retrain) takes this step:
the version's facts go into the ledger either way (a purge may delete the version later),
and a failure is committed before it propagates, so the ledger and registry.json say why
`champion` did not move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from unlearn_ops.errors import GateFailedError
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.serving.gates import GateResult
    from unlearn_ops.serving.versions import VersionInfo

__all__ = ["promote_or_record_failure"]


def promote_or_record_failure(
    workspace: Workspace,
    request_ids: Sequence[str],
    version: VersionInfo,
    gates: Sequence[GateResult],
    *,
    label: str = "",
    stages: Sequence[str] = (),
) -> dict[str, Any]:
    """Move `champion` to `version` if its gates passed; return the version's facts.

    Args:
        workspace: the workspace (its registry, ledger and lineage).
        request_ids: the requests the version serves; each gets a `failed` entry on failure.
        version: the registered version.
        gates: its gate results.
        label: what the version is called in the failure's reason and commit message
            (`exact retrain`); plain `version` when empty.
        stages: the DVC stages the failure's revision commits (empty: all of them).

    Raises:
        GateFailedError: a gate failed; `champion` stays where it was, the ledger says
            failed and the revision is committed.
    """
    from unlearn_ops.serving.promotion import promote
    from unlearn_ops.serving.records import version_facts
    from unlearn_ops.workflow.held_out_outputs import keep_served_only
    from unlearn_ops.workflow.revisions import record_revision

    facts = version_facts(version)
    try:
        promote(workspace, version, gates)
    except GateFailedError as exc:
        for request_id in request_ids:
            workspace.ledger.append(
                "failed",
                request_id,
                reason=f"{label}: {exc.summary}" if label else exc.summary,
                version=version.version,
                version_facts=facts,
            )
        name = label or "version"
        message = f"unlearn-ops: {name} {version.version} failed its gates"
        record_revision(workspace, message, stages=stages)
        raise
    # The previous champion's held-out outputs go with it (its shards may have held records
    # this version forgot).
    keep_served_only(workspace)
    return facts

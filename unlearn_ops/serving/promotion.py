"""The promotion policy: which version may become `champion`, and moving it there.

A deletion is *recorded* once every record of its request is forgotten in the workspace;
a version that does not honour every recorded deletion is never served again, whatever
the path (forget, rollback, `dvc repro`), and one whose gates failed is never promoted.
:func:`promote` is the one place `champion` moves (the old one becomes `previous`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from unlearn_ops.errors import GateFailedError, UnsafeVersionError
from unlearn_ops.serving.versions import CHAMPION, PREVIOUS, VersionInfo

if TYPE_CHECKING:
    from unlearn_ops.adapters.gx.gates import GateResult
    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["champion_accuracy", "honoured_requests", "missing_deletions", "promote"]


def honoured_requests(workspace: Workspace) -> list[str]:
    """Every deletion the workspace has made, oldest first: the requests whose records are
    all forgotten in the current data, and those whose federation client was removed."""
    forgotten = workspace.ensemble.forgotten_hashes()
    clients = workspace.client_removal_requests()
    return [
        state.request_id
        for state in workspace.ledger.requests().values()
        if (state.record_hashes and set(state.record_hashes) <= forgotten)
        or state.request_id in clients
    ]


def missing_deletions(honoured: Iterable[str], recorded: Sequence[str]) -> list[str]:
    """The recorded deletions not in `honoured`, in the order they were recorded."""
    known = set(honoured)
    return [request_id for request_id in recorded if request_id not in known]


def promote(workspace: Workspace, version: VersionInfo, gates: Sequence[GateResult]) -> str:
    """Point `champion` at `version` if every gate passed (old champion -> `previous`).

    The one place `champion` moves, so it also holds the rule that a version which does
    not honour every deletion recorded so far is never served again, whatever the path.

    Raises:
        GateFailedError: a gate failed; `champion` stays where it was.
        UnsafeVersionError: `version` misses a recorded deletion; `champion` stays.
    """
    from unlearn_ops.adapters.gx.gates import summarise_failures

    registry = workspace.registry()
    champion = registry.alias_version(CHAMPION)
    if not all(g.passed for g in gates):
        raise GateFailedError(version.version, summarise_failures(gates), champion)
    from unlearn_ops.workflow.approx_tags import exactly_honoured

    # A provisional version honours approximately until superseded (issue 14).
    missing = missing_deletions(exactly_honoured(version), honoured_requests(workspace))
    if missing:
        raise UnsafeVersionError(version.version, missing, champion)
    if champion is not None and champion != version.version:
        registry.set_alias(PREVIOUS, champion)
    registry.set_alias(CHAMPION, version.version)
    return version.version


def champion_accuracy(workspace: Workspace) -> float | None:
    """Held-out accuracy recorded on the champion version (None without a champion)."""
    registry = workspace.registry()
    champion = registry.alias_version(CHAMPION)
    if champion is None:
        return None
    value = registry.get_version(champion).tag("accuracy")
    return float(value) if value else None

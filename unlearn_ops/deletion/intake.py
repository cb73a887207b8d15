"""From the inbox to the forget pipeline: keyed hashes back to records, subjects to records.

The inbox keeps no record id, only keyed hashes, so a drain finds the records again in the
workspace's own data: it hashes the ids of every shard and of the held-out split with the
same key and looks the request's hashes up. A hash that the data no longer holds but
`forgotten.json` does belongs to a record forgotten before (the request names it by hash
only, :attr:`ForgetRequest.forgotten_hashes`); a hash found in neither was never in the
data, and the request fails with that reason alone, without holding up the others.

A request may name a data subject instead of records. With `dataset.subject_column` set in
params.yaml, preparing the data writes `subjects.json`: for each keyed hash of a subject,
the keyed hashes of that subject's records. Like everything else here, it holds no id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.errors import (
    InvalidRequestError,
    ReplayedRequestError,
    StoreError,
    UnauthenticatedRequestError,
)
from unlearn_ops.sisa.hashing import canonical_id

if TYPE_CHECKING:
    import pandas as pd

    from unlearn_ops.adapters.mlflow.registry import VersionInfo
    from unlearn_ops.deletion.inbox import Inbox, InboxEntry
    from unlearn_ops.settings import Settings
    from unlearn_ops.sisa.planning import RetrainingPlan
    from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "SUBJECTS_FILE",
    "Resolution",
    "approval_summary",
    "build_subject_index",
    "claim_batch",
    "complete_batch",
    "fail_requests",
    "forget_history",
    "receive_envelope",
    "resolve_entries",
]

SUBJECTS_FILE = "subjects.json"
logger = logging.getLogger("unlearn_ops.deletion.intake")


def build_subject_index(
    settings: Settings, subjects: Iterable[object], record_ids: Iterable[object]
) -> dict[str, list[str]]:
    """Keyed hash of each subject -> sorted keyed hashes of its records."""
    index: dict[str, set[str]] = {}
    for subject, record in zip(subjects, record_ids, strict=True):
        key = settings.hash_subject_id(canonical_id(subject))
        index.setdefault(key, set()).add(settings.hash_record_id(canonical_id(record)))
    return {key: sorted(values) for key, values in sorted(index.items())}


def write_subject_index(root: Path, index: Mapping[str, Sequence[str]]) -> None:
    """Write `subjects.json` (sorted, so git diffs stay small)."""
    (root / SUBJECTS_FILE).write_text(
        json.dumps({"subjects": dict(index)}, indent=0, sort_keys=True) + "\n", encoding="utf-8"
    )


def read_subject_index(root: Path) -> dict[str, list[str]]:
    """`subjects.json`, or an empty index when the workspace keeps none."""
    path = root / SUBJECTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise StoreError(path, f"not valid JSON ({exc})") from exc
    subjects = data.get("subjects") if isinstance(data, dict) else None
    if not isinstance(subjects, dict):
        raise StoreError(path, "no 'subjects' mapping")
    return {str(k): [str(h) for h in v] for k, v in subjects.items()}


def receive_envelope(
    inbox: Inbox, envelope: object, *, source: str, delivery_id: str | None = None
) -> str:
    """Verify an envelope and record it in the inbox; what happened, in one word.

    For intakes whose transport needs no answer of its own (Prefect events, queued runs).

    Returns:
        `new`, `duplicate` or `rejected:<kind>`; a refusal is recorded in the inbox with
        its reason, and the request is never acted on.
    """
    from unlearn_ops.deletion.envelope import verify_request

    if delivery_id is not None and inbox.seen_delivery(delivery_id):
        return "duplicate"
    try:
        if not isinstance(envelope, Mapping | str | bytes):
            raise InvalidRequestError(
                f"a request must be a JSON object, got {type(envelope).__name__}"
            )
        return inbox.accept(verify_request(envelope, inbox.settings), source, delivery_id).status
    except (InvalidRequestError, UnauthenticatedRequestError) as exc:
        if not isinstance(exc, ReplayedRequestError):  # accept() recorded that one itself
            inbox.reject(source, exc.kind, str(exc), delivery_id=delivery_id)
        logger.warning("refused a deletion request from %s (%s)", source, exc.kind)
        return f"rejected:{exc.kind}"


@dataclass
class Resolution:
    """Inbox entries rebuilt as forget requests, and the entries that cannot be."""

    requests: list[ForgetRequest] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _record_index(workspace: Workspace) -> dict[str, str]:
    """Keyed hash -> canonical id, over every shard and the held-out split."""
    ensemble = workspace.ensemble
    id_column = ensemble.columns().id_column
    tables: list[pd.DataFrame] = [ensemble.read_shard(s) for s in ensemble.shard_ids]
    tables.append(ensemble.read_holdout())
    hash_id = workspace.settings.hash_record_id
    return {
        hash_id(text): text
        for table in tables
        for text in (canonical_id(r) for r in table[id_column].tolist())
    }


def resolve_entries(workspace: Workspace, entries: Sequence[InboxEntry]) -> Resolution:
    """Rebuild each entry as a :class:`ForgetRequest` from the workspace's data.

    Entries whose records (or subject) the data never held fail alone, with the reason.
    """
    from datetime import datetime

    resolution = Resolution()
    if not entries:
        return resolution
    known = _record_index(workspace)
    forgotten = workspace.ensemble.forgotten_hashes()
    subjects = read_subject_index(workspace.root) if any(e.subject_hash for e in entries) else {}
    for entry in entries:
        hashes = list(entry.record_hashes)
        if entry.subject_hash is not None:
            if entry.subject_hash not in subjects:
                resolution.failed[entry.request_id] = (
                    "the subject is not in the workspace's subject index "
                    "(dataset.subject_column in params.yaml)"
                )
                continue
            hashes = subjects[entry.subject_hash]
        unknown = [h for h in hashes if h not in known and h not in forgotten]
        if unknown:
            resolution.failed[entry.request_id] = (
                f"{len(unknown)} of {len(hashes)} records were never in the training data"
            )
            continue
        resolution.requests.append(
            ForgetRequest(
                request_id=entry.request_id,
                record_ids=tuple(known[h] for h in hashes if h in known),
                forgotten_hashes=tuple(h for h in hashes if h not in known),
                reason=entry.reason,
                requested_at=datetime.fromisoformat(entry.requested_at),
            )
        )
    return resolution


def claim_batch(workspace: Workspace, run: str) -> Resolution | None:
    """Claim every unfinished request of the inbox and rebuild it; None when none waits.

    Call it holding the workspace lock. Requests whose records (or subject) the data
    never held fail here, in the inbox and the ledger; the rest are the batch to forget.
    """
    entries = workspace.inbox.claim(run)
    if not entries:
        return None
    resolution = resolve_entries(workspace, entries)
    fail_requests(workspace, resolution.failed)
    return resolution


def fail_requests(
    workspace: Workspace, reasons: Mapping[str, str], *, in_ledger: bool = True
) -> None:
    """Requests that will not be served: `failed` with the reason in the inbox (and ledger).

    `in_ledger=False` where the forget pipeline wrote the ledger's `failed` itself (a
    version that failed its gates) or where nothing was received (a refused batch).
    """
    for request_id, reason in reasons.items():
        workspace.inbox.fail([request_id], reason)
        if in_ledger:
            workspace.ledger.append("failed", request_id, reason=reason)


def complete_batch(
    workspace: Workspace, requests: Sequence[ForgetRequest], answer: Mapping[str, Any], run: str
) -> None:
    """Requests served: `done` in the inbox with the version that serves each one."""
    if answer.get("noop"):  # served already, each by its own version
        for request_id, version in answer["served_by"].items():
            workspace.inbox.complete([request_id], {"version": version, "run": run})
    else:
        workspace.inbox.complete(
            [r.request_id for r in requests], {"version": answer["version"], "run": run}
        )


def forget_history(versions: Sequence[VersionInfo], last: int = 10) -> list[float]:
    """Accuracy change of each forget version against its parent, oldest first (at most
    the `last` ones): what an approver is told to expect."""
    accuracy = {v.version: v.tag("accuracy") for v in versions}
    changes = []
    for info in versions:
        parent = accuracy.get(info.tag("parent_version"))
        if info.tag("kind") == "forget" and parent and info.tag("accuracy"):
            changes.append(float(info.tag("accuracy")) - float(parent))
    return changes[-last:]


def approval_summary(
    workspace: Workspace,
    requests: Sequence[ForgetRequest],
    plan: RetrainingPlan,
    history: Sequence[float] = (),
) -> dict[str, Any]:
    """What an approver needs to decide: which shards, how much retraining, expected change.

    Args:
        history: accuracy changes of earlier forget versions (newest last); their mean is
            the expected change, as no model of this data predicts it better.
    """
    expected = sum(history) / len(history) if history else None
    return {
        "requests": [r.request_id for r in requests],
        "records": len({h for r in requests for h in r.record_hashes(workspace.settings)}),
        "shards": plan.shard_ids,
        "stages_to_retrain": sum(s.stages_to_train for s in plan.shards),
        "retraining_fraction": round(plan.fraction, 4),
        "expected_accuracy_change": None if expected is None else round(expected, 4),
        "based_on_versions": len(history),
    }


def approval_markdown(summary: Mapping[str, Any]) -> str:
    """The approval form's description, as the Prefect UI shows it."""
    change = summary["expected_accuracy_change"]
    expected = (
        f"{change:+.4f} (mean of the last {summary['based_on_versions']} forget versions)"
        if change is not None
        else "unknown (no forget version yet)"
    )
    requests = summary["requests"]
    shown = ", ".join(requests[:10]) + (
        f" and {len(requests) - 10} more" if len(requests) > 10 else ""
    )
    return (
        f"**Forget {summary['records']} records** for {len(requests)} request(s): {shown}.\n\n"
        f"- Shards to retrain: {summary['shards'] or 'none'}\n"
        f"- Stages to retrain: {summary['stages_to_retrain']} "
        f"({summary['retraining_fraction']:.1%} of a full training)\n"
        f"- Expected accuracy change: {expected}\n\n"
        "Approve to retrain and register the new version; reject with a reason to refuse "
        "the requests (the reason goes to the ledger)."
    )

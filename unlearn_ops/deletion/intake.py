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

A request may name a federation client instead (a withdrawal, issue 13): it is set aside
as it is, for the drain's withdrawal stage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.errors import StoreError
from unlearn_ops.sisa.hashing import canonical_id

if TYPE_CHECKING:
    import pandas as pd

    from unlearn_ops.deletion.inbox import InboxEntry
    from unlearn_ops.settings import Settings
    from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "SUBJECTS_FILE",
    "Resolution",
    "build_subject_index",
    "claim_batch",
    "complete_batch",
    "fail_requests",
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


@dataclass
class Resolution:
    """Inbox entries rebuilt as forget requests, client withdrawals, and what cannot be."""

    requests: list[ForgetRequest] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    withdrawals: list[InboxEntry] = field(default_factory=list)


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
    resolution.withdrawals = [e for e in entries if e.client_hash is not None]
    entries = [e for e in entries if e.client_hash is None]
    if not entries:
        return resolution
    known = _record_index(workspace)
    forgotten = workspace.ensemble.forgotten_hashes()
    subjects = read_subject_index(workspace.root) if any(e.subject_hash for e in entries) else {}
    for entry in entries:
        hashes = list(entry.record_hashes)
        if not hashes and entry.subject_hash is None:
            resolution.failed[entry.request_id] = "names no records, no subject and no client"
            continue
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
                signed_by=entry.authenticated_by,
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

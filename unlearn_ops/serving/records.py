"""What the ledger keeps of a version: its facts when served, failed or purged, read back.

Versions do not last: a purge deletes those that still hold forgotten records. The facts an
audit or a report needs of a version (kind, registration time, requests, gates, accuracy,
data revision, shards retrained) are therefore written into the ledger's `served`, `failed`
and `purged` entries at the time (:func:`version_facts`) and read back from there when the
registry no longer holds the version (:func:`recorded_versions`; issue 11, finding 3).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from unlearn_ops.canonical import JsonReady
from unlearn_ops.timestamps import parse_datetime_or_none

if TYPE_CHECKING:
    from unlearn_ops.deletion.ledger import LedgerEntry
    from unlearn_ops.serving.versions import VersionInfo

__all__ = [
    "GateSummary",
    "RecordedVersion",
    "gate_summaries",
    "recorded_versions",
    "shards_retrained",
    "version_facts",
    "version_number",
]


@dataclass(frozen=True)
class GateSummary(JsonReady):
    """One gate's verdict on a version, as recorded in its `unlearn.gates` tag."""

    gate: str
    passed: bool
    expectations: int
    failed: int

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        if not self.expectations:
            return f"{self.gate} {verdict}"
        detail = f", {self.failed} failed" if self.failed else ""
        return f"{self.gate} {verdict} ({self.expectations} expectation(s){detail})"


def gate_summaries(version: VersionInfo) -> tuple[GateSummary, ...]:
    """The gate verdicts of a version, from its `unlearn.gates` tag."""
    try:
        gates = json.loads(version.tag("gates") or "{}")
    except json.JSONDecodeError:
        return ()
    if not isinstance(gates, dict):
        return ()
    summaries = []
    for name, result in sorted(gates.items()):
        if not isinstance(result, dict):
            continue
        # A long tag keeps only the failed outcomes and counts the others (provenance.py).
        outcomes = [o for o in result.get("outcomes") or [] if isinstance(o, dict)]
        failed = sum(1 for o in outcomes if not o.get("success", False))
        total = len(outcomes) + int(result.get("outcomes_omitted", 0) or 0)
        summaries.append(GateSummary(str(name), bool(result.get("passed")), total, failed))
    return tuple(summaries)


def shards_retrained(versions: Iterable[VersionInfo]) -> dict[int, int]:
    """Shard -> earliest first slice retrained, over the `unlearn.first_stages` tags."""
    merged: dict[int, int] = {}
    for version in versions:
        try:
            stages = json.loads(version.tag("first_stages") or "{}")
            shards = json.loads(version.tag("shards_retrained") or "[]")
        except json.JSONDecodeError:
            continue
        for shard in shards:
            first = int(stages.get(str(shard), 0))
            merged[int(shard)] = min(first, merged.get(int(shard), first))
    return merged


def version_number(version: str) -> int:
    """A version's number, for ordering (MLflow numbers them 1, 2, ...; never reused)."""
    return int(version) if version.isdigit() else 0


@dataclass(frozen=True)
class RecordedVersion:
    """A version as the ledger recorded it: what is known of it once the registry drops it.

    Attributes:
        version: the version.
        kind: `train`, `forget`, `replay` (`-`: not recorded).
        registered_at: when it was registered (None: not recorded).
        request_ids: the requests it was made for.
        honoured_count: how many requests it honoured when recorded.
        gates: its gate verdicts.
        gates_passed: whether every gate passed (None: not recorded).
        accuracy: its held-out accuracy, as tagged.
        git_sha: its data revision.
        first_stages: shard -> first slice it retrained.
        purged_at: when a purge deleted it (None: not purged).
    """

    version: str
    kind: str = "-"
    registered_at: datetime | None = None
    request_ids: tuple[str, ...] = ()
    honoured_count: int = 0
    gates: tuple[GateSummary, ...] = ()
    gates_passed: bool | None = None
    accuracy: str = ""
    git_sha: str = ""
    first_stages: Mapping[int, int] = field(default_factory=dict)
    purged_at: datetime | None = None

    @property
    def has_facts(self) -> bool:
        """Whether the ledger recorded its facts (ledgers before them name only its number)."""
        return self.registered_at is not None


def version_facts(version: VersionInfo) -> dict[str, Any]:
    """The facts of a version that the ledger keeps (`served`, `failed`, `purged` entries).

    What the audit and the report read from the registry, in a small JSON-ready form:
    its kind, when it was registered, the requests it was made for, its gates, accuracy,
    data revision and the shards it retrained (never the honoured list, which grows).
    """
    honoured = version.tag("honoured_count", "0")
    return {
        "kind": version.tag("kind") or "-",
        "registered_at": datetime.fromtimestamp(version.created_at / 1000, UTC).isoformat(
            timespec="milliseconds"
        ),
        "request_ids": list(version.request_ids),
        "honoured_count": int(honoured) if honoured.isdigit() else 0,
        "gates": [gate.to_dict() for gate in gate_summaries(version)],
        "gates_passed": version.gates_passed,
        "accuracy": version.tag("accuracy"),
        "git_sha": version.tag("git_sha"),
        "first_stages": {str(k): v for k, v in sorted(shards_retrained([version]).items())},
    }


def _recorded(number: str, facts: Mapping[str, Any], purged_at: datetime | None) -> RecordedVersion:
    gates = tuple(
        GateSummary(
            str(g.get("gate", "")),
            bool(g.get("passed")),
            int(g.get("expectations", 0) or 0),
            int(g.get("failed", 0) or 0),
        )
        for g in facts.get("gates") or []
        if isinstance(g, dict)
    )
    stages = facts.get("first_stages") or {}
    passed = facts.get("gates_passed")
    return RecordedVersion(
        version=number,
        kind=str(facts.get("kind") or "-"),
        registered_at=parse_datetime_or_none(facts.get("registered_at")),
        request_ids=tuple(str(r) for r in facts.get("request_ids") or []),
        honoured_count=int(facts.get("honoured_count") or 0),
        gates=gates,
        gates_passed=passed if isinstance(passed, bool) else None,
        accuracy=str(facts.get("accuracy") or ""),
        git_sha=str(facts.get("git_sha") or ""),
        first_stages={int(k): int(v) for k, v in stages.items()}
        if isinstance(stages, dict)
        else {},
        purged_at=purged_at,
    )


def recorded_versions(entries: Iterable[LedgerEntry]) -> dict[str, RecordedVersion]:
    """Every version the ledger recorded facts of, or saw purged, by version number.

    Facts come from `purged` entries (`deleted_versions`, the latest), else from `served`
    and `failed` entries (`version_facts`, next to `version`); the purge date from the
    first `purged` entry whose `versions` names it.
    """
    facts: dict[str, Mapping[str, Any]] = {}
    purged: dict[str, datetime] = {}
    for entry in entries:
        data = entry.data
        if entry.event in ("served", "failed"):
            number, found = data.get("version"), data.get("version_facts")
            if number is not None and isinstance(found, dict):
                facts.setdefault(str(number), found)
        elif entry.event == "purged":
            at = parse_datetime_or_none(entry.at)
            for number in data.get("versions") or []:
                if at is not None:
                    purged.setdefault(str(number), at)
            deleted = data.get("deleted_versions")
            if isinstance(deleted, dict):
                for number, found in deleted.items():
                    if isinstance(found, dict):
                        # Taken just before the deletion: the registry's last word on it
                        # (its honoured count may have grown since it was served).
                        facts[str(number)] = found
    return {
        number: _recorded(number, facts.get(number, {}), purged.get(number))
        for number in sorted(set(facts) | set(purged), key=version_number)
    }

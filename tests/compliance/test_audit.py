"""Audits built from fake ledger entries and version records: no registry, no git."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import tagged_version
from unlearn_ops.compliance.audit import (
    RecordedVersion,
    RequestAudit,
    build_audit,
    check_chain,
    covering_requests,
    first_honouring,
    gate_summaries,
    parse_time,
    received_entries,
    recorded_versions,
    version_facts,
)
from unlearn_ops.compliance.audit_text import describe_audit
from unlearn_ops.deletion import ledger as ledger_module
from unlearn_ops.deletion.ledger import Ledger
from unlearn_ops.errors import RequestNotFoundError, UnlearnOpsError
from unlearn_ops.params import ComplianceParams
from unlearn_ops.serving.versions import VersionInfo

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
COMPLIANCE = ComplianceParams(deadline_days=30, retention_days=10)
GATES = {
    "data": {"passed": True, "outcomes": [{"success": True}, {"success": True}]},
    "metric": {"passed": True, "outcomes": [{"success": True}]},
}


def version(
    number: str,
    *,
    requests: list[str],
    honoured: list[str],
    passed: bool = True,
    aliases: tuple[str, ...] = (),
    at: datetime = T0,
    retrained: dict[int, int] | None = None,
) -> VersionInfo:
    retrained = retrained or {}
    tags = {
        "kind": "forget" if requests else "train",
        "request_ids": json.dumps(requests),
        "honoured_requests": json.dumps(honoured),
        "honoured_count": str(len(honoured)),
        "gates": json.dumps(GATES),
        "gates_passed": "true" if passed else "false",
        "shards_retrained": json.dumps(sorted(retrained)),
        "first_stages": json.dumps({str(k): v for k, v in retrained.items()}),
    }
    return tagged_version(number, tags, at=at, aliases=aliases)


class Clock:
    """Stands in for the ledger's clock: each append happens at `now`."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> str:
        return self.now.isoformat(timespec="milliseconds")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ledger_module, "_now", fake)
    return fake


def receive(ledger: Ledger, request_id: str, hashes: list[str], requested_at: datetime) -> None:
    ledger.append(
        "received",
        request_id,
        record_hashes=hashes,
        reason="GDPR art. 17",
        requested_at=requested_at.isoformat(),
    )


def audit_of(
    ledger: Ledger,
    request_id: str,
    versions: list[VersionInfo],
    now: datetime,
    *,
    recorded: bool = False,
) -> RequestAudit:
    """The audit of one request; `recorded` adds what the ledger recorded of versions.

    With `recorded`, the audit is the one `audit_request` builds (history that outlives
    the registry, #11).
    """
    states = ledger.requests()
    return build_audit(
        states[request_id],
        received_entries(ledger.entries()).get(request_id),
        versions,
        COMPLIANCE,
        now=now,
        parent_revision="a" * 40,
        covering=covering_requests(states[request_id], states),
        recorded=recorded_versions(ledger.entries()) if recorded else None,
    )


def test_a_served_request_in_time(tmp_path: Path, clock: Clock) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    receive(ledger, "r1", ["h1", "h2"], T0 - timedelta(days=2))
    clock.now = T0 + timedelta(hours=1)
    ledger.append("applied", "r1", git_sha="b" * 40, shards_md5="m.dir", shard_md5s={}, tags=[])
    clock.now = T0 + timedelta(hours=2)
    ledger.append("served", "r1", version="2")
    versions = [
        version("1", requests=[], honoured=[], aliases=("previous",)),
        version("2", requests=["r1"], honoured=["r1"], aliases=("champion",), retrained={1: 0}),
    ]
    audit = audit_of(ledger, "r1", versions, T0 + timedelta(days=1))
    assert audit.state == "served"
    assert (audit.record_count, audit.reason) == (2, "GDPR art. 17")
    assert audit.requested_at == T0 - timedelta(days=2)
    assert audit.received_at == T0
    assert (audit.data_revision, audit.parent_revision) == ("b" * 40, "a" * 40)
    assert audit.shards_retrained == {1: 0}
    assert audit.versions_made_for == ("2",)
    assert (audit.first_honouring_version, audit.served_version) == ("2", "2")
    assert audit.served_at == T0 + timedelta(hours=2)
    assert audit.gates_passed is True
    assert [str(g) for g in audit.gates] == [
        "data passed (2 expectation(s))",
        "metric passed (1 expectation(s))",
    ]
    assert (audit.champion_version, audit.champion_honours) == ("2", True)
    assert audit.deadline == T0 + timedelta(days=28)
    assert audit.deadline_status == "met"
    assert audit.latency_days == pytest.approx(2 + 2 / 24, abs=1e-3)
    assert audit.retention_until == T0 + timedelta(hours=2, days=10)
    assert audit.exactness is None
    lines = describe_audit(audit)
    assert "purge: not purged yet (retention until 2026-03-11)" in lines
    assert "exactness: not run (pass --certify)" in lines
    assert any(line.startswith("deadline: met") for line in lines)
    # JSON-ready, and it holds counts and a digest, never the record hashes themselves.
    text = json.dumps(audit.to_dict())
    assert '"h1"' not in text
    assert audit.to_dict()["received"]["record_count"] == 2


def test_deadline_pending_then_missed(tmp_path: Path, clock: Clock) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    receive(ledger, "r1", ["h1"], T0)
    pending = audit_of(ledger, "r1", [], T0 + timedelta(days=29))
    assert (pending.deadline_status, pending.latency_days) == ("pending", None)
    assert pending.first_honouring_version is None
    assert "applied: not yet" in describe_audit(pending)
    assert "exactness: not run (no version honours it yet)" in describe_audit(pending)
    assert audit_of(ledger, "r1", [], T0 + timedelta(days=31)).deadline_status == "missed"

    clock.now = T0 + timedelta(days=31)
    ledger.append("served", "r1", version="2")
    late = audit_of(ledger, "r1", [version("2", requests=["r1"], honoured=["r1"])], clock.now)
    assert late.deadline_status == "missed"
    assert late.latency_days == pytest.approx(31.0)


def test_purged_and_failures(tmp_path: Path, clock: Clock) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    receive(ledger, "r1", ["h1"], T0)
    ledger.append("failed", "r1", reason="metric gate failed", version="2")
    ledger.append("served", "r1", version="3")
    clock.now = T0 + timedelta(days=11)
    ledger.append("purged", "r1", versions=["1", "2"])
    versions = [
        version("2", requests=["r1"], honoured=["r1"], passed=False, retrained={0: 1}),
        version("3", requests=["r1"], honoured=["r1"], aliases=("champion",)),
    ]
    audit = audit_of(ledger, "r1", versions, clock.now)
    assert audit.state == "purged"
    assert audit.first_honouring_version == "3"  # version 2 failed its gates
    assert audit.versions_made_for == ("2", "3")
    assert audit.shards_retrained == {0: 1}
    assert audit.purged_at == clock.now
    assert audit.purge == {"versions": ["1", "2"]}
    assert audit.failures[0]["reason"] == "metric gate failed"
    assert "purge: purged at 2026-03-12 12:00:00 UTC" in describe_audit(audit)


def test_a_noop_request_is_honoured_by_the_versions_of_the_requests_that_covered_it(
    tmp_path: Path, clock: Clock
) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    receive(ledger, "r1", ["h1", "h2"], T0)
    ledger.append("served", "r1", version="2")
    receive(ledger, "r2", ["h2"], T0)
    ledger.append("served", "r2", version="2", noop=True)
    versions = [version("2", requests=["r1"], honoured=["r1"], aliases=("champion",))]
    audit = audit_of(ledger, "r2", versions, T0)
    assert audit.noop
    assert audit.first_honouring_version == "2"
    assert audit.champion_honours
    assert audit.applied_at is None
    assert any("no data change of its own" in line for line in describe_audit(audit))
    assert covering_requests(ledger.requests()["r1"], ledger.requests()) == ()


def provisional(number: str, *, honoured: list[str], approximate: list[str]) -> VersionInfo:
    """A provisional version (issue 14) honouring `approximate` only approximately."""
    base = version(number, requests=approximate[-1:], honoured=honoured)
    extra = {"unlearn.provisional": "true", "unlearn.approximate_requests": json.dumps(approximate)}
    return dataclasses.replace(base, tags={**base.tags, **extra})


def test_a_provisional_version_honours_its_requests_only_approximately(
    tmp_path: Path, clock: Clock
) -> None:
    # r1 is forgotten approximately by version 2, r2 by version 3 (a descendant of 2, so
    # it honours r1 approximately too); version 4, the exact retrain, serves both.
    ledger = Ledger(tmp_path / "ledger.jsonl")
    receive(ledger, "r1", ["h1"], T0)
    ledger.append("served", "r1", version="2", approximate=True, method="salun")
    receive(ledger, "r2", ["h2"], T0)
    ledger.append("served", "r2", version="3", approximate=True, method="salun")
    versions = [
        version("1", requests=[], honoured=[]),
        provisional("2", honoured=["r1"], approximate=["r1"]),
        provisional("3", honoured=["r1", "r2"], approximate=["r1", "r2"]),
    ]
    audit = audit_of(ledger, "r1", versions, T0)
    assert (audit.first_honouring_version, audit.first_exact_version) == ("2", None)
    text = describe_audit(audit)
    assert any(
        "first by version 2 (registered" in line and ", approximately)" in line for line in text
    )
    assert (
        "exactness: not run (no version honours it exactly yet: the exact retrain is pending)"
        in text
    )

    for request_id in ("r1", "r2"):
        ledger.append("served", request_id, version="4", exact=True)
    versions.append(version("4", requests=[], honoured=["r1", "r2"], aliases=("champion",)))
    versions.append(provisional("5", honoured=["r1", "r2", "r3"], approximate=["r3"]))
    for request_id, first in (("r1", "2"), ("r2", "3")):
        audit = audit_of(ledger, request_id, versions, T0)
        assert audit.first_honouring_version == first
        assert audit.first_exact_version == "4"
        assert audit.to_dict()["honoured"]["first_exact_version"] == "4"
        assert any("approximately; exactly by version 4)" in line for line in describe_audit(audit))


def test_first_honouring_skips_failed_gates_and_takes_the_oldest() -> None:
    versions = [
        version("2", requests=["r"], honoured=["r"], passed=False),
        version("4", requests=[], honoured=["r"]),
        version("3", requests=["r"], honoured=["r"]),
    ]
    assert first_honouring(versions, "r").version == "3"  # type: ignore[union-attr]
    assert first_honouring(versions, "other") is None


def test_gate_summaries_read_a_trimmed_tag() -> None:
    info = version("2", requests=[], honoured=[])
    trimmed = {
        "data": {"passed": False, "outcomes": [{"success": False}], "outcomes_omitted": 9},
        "metric": {"passed": True},
    }
    info.tags["unlearn.gates"] = json.dumps(trimmed)
    summaries = gate_summaries(info)
    assert [str(s) for s in summaries] == [
        "data FAILED (10 expectation(s), 1 failed)",
        "metric passed",
    ]
    info.tags["unlearn.gates"] = "not json"
    assert gate_summaries(info) == ()


def test_parse_time_reads_naive_times_as_utc() -> None:
    assert parse_time("2026-03-01T12:00:00") == T0
    assert parse_time("2026-03-01T13:00:00+01:00") == T0
    assert parse_time("yesterday") is None
    assert parse_time(None) is None


def test_check_chain_counts_entries_and_names_an_edited_line(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    assert check_chain(ledger).to_dict() == {"intact": True, "entries": 0, "problems": []}
    for request_id in ("r1", "r2", "r3"):
        receive(ledger, request_id, ["h"], T0)
    assert check_chain(ledger).entries == 3
    assert check_chain(ledger).intact
    lines = ledger.path.read_text().splitlines()
    lines[1] = lines[1].replace("GDPR", "CCPA")
    ledger.path.write_text("\n".join(lines) + "\n")
    status = check_chain(ledger)
    assert not status.intact
    assert status.problems[0] == "line 2: its content does not match its hash"


def test_request_not_found_error_is_one_line_naming_the_known_ids() -> None:
    error = RequestNotFoundError("nope", "ws/ledger.jsonl", ["r1", "r2"])
    assert isinstance(error, UnlearnOpsError)
    assert isinstance(error, KeyError)
    assert str(error) == (
        "request 'nope' is not in the ledger ws/ledger.jsonl; requests it holds: r1, r2; "
        "check the id (request ids are case-sensitive)"
    )
    assert "no request yet" in str(RequestNotFoundError("x", "l"))


# ---------------------------------------------- history that outlives the registry (#11)
def two_requests_then_replay() -> list[VersionInfo]:
    """v1 trained, v2 for r1, v3 for r2, v4 a replay of v1 for both; v4 champion."""
    return [
        version("1", requests=[], honoured=[], at=T0 - timedelta(days=1)),
        version("2", requests=["r1"], honoured=["r1"], retrained={0: 1, 1: 0}),
        version("3", requests=["r2"], honoured=["r1", "r2"], retrained={2: 0}),
        version(
            "4",
            requests=["r1", "r2"],
            honoured=["r1", "r2"],
            aliases=("champion",),
            retrained={0: 1, 1: 0, 2: 0},
        ),
    ]


def test_the_audit_after_a_purge_says_what_it_said_before(tmp_path: Path, clock: Clock) -> None:
    versions = two_requests_then_replay()
    ledger = Ledger(tmp_path / "ledger.jsonl")
    receive(ledger, "r1", ["h1"], T0)
    ledger.append("applied", "r1", git_sha="b" * 40, shards_md5="m.dir")
    ledger.append("served", "r1", version="2", version_facts=version_facts(versions[1]))
    receive(ledger, "r2", ["h2"], T0)
    ledger.append("applied", "r2", git_sha="c" * 40, shards_md5="n.dir")
    ledger.append("served", "r2", version="3", version_facts=version_facts(versions[2]))
    before = audit_of(ledger, "r1", versions, T0 + timedelta(days=1), recorded=True)

    clock.now = T0 + timedelta(days=40)
    facts = {v.version: version_facts(v) for v in versions[:2]}
    for request_id, deleted in (("r1", ["1"]), ("r2", ["1", "2"])):
        ledger.append(
            "purged",
            request_id,
            versions=deleted,
            deleted_versions={v: facts[v] for v in deleted},
        )
    after = audit_of(ledger, "r1", versions[2:], T0 + timedelta(days=1), recorded=True)

    assert after.first_honouring_version == before.first_honouring_version == "2"
    assert after.versions_made_for == before.versions_made_for == ("2", "4")
    assert after.shards_retrained == before.shards_retrained == {0: 1, 1: 0, 2: 0}
    assert after.first_honouring_created_at == before.first_honouring_created_at == T0
    assert after.gates == before.gates
    assert after.versions_purged == {"2": clock.now}
    assert before.versions_purged == {}
    old, new = before.to_dict(), after.to_dict()
    for section in set(old) - {"state", "purge", "versions_purged"}:
        assert new[section] == old[section], section
    lines = describe_audit(after)
    assert "honoured: first by version 2 (purged on 2026-04-10) (registered " in "\n".join(lines)
    assert "exactness: cannot be run (version 2 was purged on 2026-04-10)" in lines
    # The purged versions' facts are not repeated in the request's purge details.
    assert after.purge == {"versions": ["1"]}


def test_a_ledger_without_the_recorded_facts_still_names_the_first_version(
    tmp_path: Path, clock: Clock
) -> None:
    """A ledger written before version facts: the version and its purge date, no more."""
    versions = two_requests_then_replay()
    ledger = Ledger(tmp_path / "ledger.jsonl")
    receive(ledger, "r1", ["h1"], T0)
    ledger.append("applied", "r1", git_sha="b" * 40)
    ledger.append("served", "r1", version="2")
    receive(ledger, "r2", ["h2"], T0)
    ledger.append("served", "r2", version="3")
    clock.now = T0 + timedelta(days=40)
    ledger.append("purged", "r2", versions=["1", "2"])
    audit = audit_of(ledger, "r1", versions[2:], T0, recorded=True)
    assert audit.first_honouring_version == "2"
    assert (audit.first_honouring_created_at, audit.gates) == (None, ())
    assert audit.versions_made_for == ("2", "4")
    assert audit.shards_retrained == {0: 1, 1: 0, 2: 0}  # version 4's, from the registry
    assert audit.versions_purged == {"2": clock.now}
    assert "honoured: first by version 2 (purged on 2026-04-10) (registered -); gates: " in (
        "\n".join(describe_audit(audit))
    )
    # And with every version still registered, the same answers as before the new fields.
    assert audit_of(ledger, "r1", versions, T0, recorded=True).first_honouring_created_at == T0


def test_shards_a_killed_run_retrained_count_once_the_request_is_applied(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append(
        "received", "crash-2", record_hashes=["h1", "h2", "h3"], retrains={"0": 0, "1": 2, "2": 1}
    )
    # Killed after shards 0 and 1 retrained: the rerun's version retrained shard 2 only.
    versions = [version("2", requests=["crash-2"], honoured=["crash-2"], retrained={2: 1})]
    assert audit_of(ledger, "crash-2", versions, T0, recorded=True).shards_retrained == {2: 1}
    ledger.append("applied", "crash-2", git_sha="b" * 40)
    ledger.append("served", "crash-2", version="2")
    audit = audit_of(ledger, "crash-2", versions, T0, recorded=True)
    assert audit.shards_retrained == {0: 0, 1: 2, 2: 1}
    applied = next(line for line in describe_audit(audit) if line.startswith("applied: "))
    assert "shard 0 from slice 0, shard 1 from slice 2, shard 2 from slice 1" in applied


def test_recorded_versions_read_facts_and_purge_dates(tmp_path: Path, clock: Clock) -> None:
    info = version("2", requests=["r1"], honoured=["r1", "r0"], retrained={1: 0}, at=T0)
    info.tags["unlearn.accuracy"] = "0.9512"
    info.tags["unlearn.git_sha"] = "b" * 40
    facts = version_facts(info)
    assert facts == {
        "kind": "forget",
        "registered_at": "2026-03-01T12:00:00.000+00:00",
        "request_ids": ["r1"],
        "honoured_count": 2,
        "gates": [
            {"gate": "data", "passed": True, "expectations": 2, "failed": 0},
            {"gate": "metric", "passed": True, "expectations": 1, "failed": 0},
        ],
        "gates_passed": True,
        "accuracy": "0.9512",
        "git_sha": "b" * 40,
        "first_stages": {"1": 0},
    }
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("failed", "r1", version="2", reason="metric", version_facts=facts)
    clock.now = T0 + timedelta(days=3)
    # The purge's snapshot is the registry's last word (a no-op request was tagged since).
    latest = {**facts, "honoured_count": 3}
    ledger.append("purged", "r1", versions=["2", "1"], deleted_versions={"2": latest})
    clock.now = T0 + timedelta(days=4)
    ledger.append("purged", "r2", versions=["1"])
    recorded = recorded_versions(ledger.entries())
    assert list(recorded) == ["1", "2"]
    assert recorded["1"] == RecordedVersion("1", purged_at=T0 + timedelta(days=3))
    assert not recorded["1"].has_facts
    two = recorded["2"]
    assert (two.kind, two.registered_at, two.request_ids) == ("forget", T0, ("r1",))
    assert [str(g) for g in two.gates] == [str(g) for g in gate_summaries(info)]
    assert (two.gates_passed, two.accuracy, two.first_stages) == (True, "0.9512", {1: 0})
    assert two.honoured_count == 3
    assert two.purged_at == T0 + timedelta(days=3)

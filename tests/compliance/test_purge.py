"""Purge planning: which versions go when, where requests stand, which checkpoints go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from unlearn_ops.compliance.purge import (
    ForgottenRequest,
    PurgePlan,
    VersionSummary,
    checkpoints_to_purge,
    forgotten_requests,
    parse_now,
    plan_versions,
)
from unlearn_ops.deletion.ledger import Ledger
from unlearn_ops.errors import InvalidRequestError
from unlearn_ops.sisa.checkpoint_index import CheckpointIndex, IndexEntry

T0 = datetime(2027, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def request(
    request_id: str, applied_day: int, hashes: set[str], window: int = 30
) -> ForgottenRequest:
    applied = T0 + applied_day * DAY
    return ForgottenRequest(request_id, frozenset(hashes), applied, applied + window * DAY)


def version(number: str, *honoured: str) -> VersionSummary:
    return VersionSummary(number, frozenset(honoured), f"sha{number}")


VERSIONS = [version("1"), version("2", "r1"), version("3", "r1", "r2")]
REQUESTS = [request("r1", 0, {"a"}), request("r2", 10, {"b"})]


def fates_at(day: float, champion: str | None = "3") -> tuple[dict[str, str], dict[str, str]]:
    versions, requests = plan_versions(VERSIONS, REQUESTS, champion, T0 + day * DAY)
    return {f.version: f.action for f in versions}, {f.request_id: f.status for f in requests}


def test_nothing_goes_inside_the_window() -> None:
    versions, requests = fates_at(29)
    assert versions == {"1": "pending", "2": "pending", "3": "keep"}
    assert requests == {"r1": "pending", "r2": "pending"}


def test_a_version_goes_with_its_earliest_due_request() -> None:
    versions, requests = fates_at(31)
    assert versions == {"1": "delete", "2": "pending", "3": "keep"}
    assert requests == {"r1": "purge", "r2": "pending"}
    fates, _ = plan_versions(VERSIONS, REQUESTS, "3", T0 + 31 * DAY)
    assert fates[1].due_at == T0 + 40 * DAY
    assert fates[0].missing == ("r1", "r2")


def test_a_version_holding_a_removed_client_says_so() -> None:
    client = request("w1", 0, set())  # a federation client's removal names no record
    fates, _ = plan_versions([version("1"), version("2", "w1")], [client], "2", T0 + 31 * DAY)
    assert fates[0].action == "delete"
    assert fates[0].reason.startswith("holds the client of request w1, retention ended")
    fates, _ = plan_versions(VERSIONS, REQUESTS, "3", T0 + 31 * DAY)
    assert fates[0].reason.startswith("holds records of request r1")


def test_after_every_window_only_versions_honouring_all_remain() -> None:
    versions, requests = fates_at(41)
    assert versions == {"1": "delete", "2": "delete", "3": "keep"}
    assert requests == {"r1": "purge", "r2": "purge"}


def test_the_champion_is_never_deleted_and_blocks_its_requests() -> None:
    # Version 3 failed its gates: champion stayed at 2, which lacks r2.
    versions, requests = fates_at(100, champion="2")
    assert versions == {"1": "delete", "2": "keep", "3": "keep"}
    assert requests == {"r1": "purge", "r2": "blocked"}


def test_a_purged_request_stays_purged() -> None:
    done = ForgottenRequest("r1", frozenset({"a"}), T0, T0 + 30 * DAY, "2027-02-01T00:00:00")
    _, requests = plan_versions(VERSIONS[1:], [done], "3", T0 + 50 * DAY)
    assert requests[0].status == "purged"


def test_forgotten_requests_read_the_ledger_clock(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("received", "r1", record_hashes=["a", "b"])
    ledger.append("applied", "r1", git_sha="x")
    ledger.append("received", "r2", record_hashes=["c"])  # never applied
    ledger.append("received", "r3", record_hashes=["a"])  # found served already
    ledger.append("served", "r3", version="2", noop=True)
    found = forgotten_requests(ledger.requests(), {"a", "b"}, retention_days=7)
    assert [r.request_id for r in found] == ["r1", "r3"]
    applied = ledger.request("r1").applied  # type: ignore[union-attr]
    assert applied is not None
    assert found[0].due_at == parse_now(applied["at"]) + 7 * DAY
    assert forgotten_requests(ledger.requests(), {"a"}, 7)[0].request_id == "r3"


def test_a_removed_federation_client_is_forgotten_from_its_served_clock(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("received", "w1", kind="client", client_hashes=["h1"], record_hashes=[])
    ledger.append("received", "w2", kind="client", client_hashes=["h2"], record_hashes=[])
    ledger.append("served", "w1", version="2", client_hashes=["h1"])
    assert forgotten_requests(ledger.requests(), set(), 7) == []  # names no record
    [found] = forgotten_requests(ledger.requests(), set(), 7, {"w1", "w2"})  # w2: not served
    served = ledger.request("w1").served  # type: ignore[union-attr]
    assert served is not None
    assert (found.request_id, found.record_hashes) == ("w1", frozenset())
    assert found.due_at == parse_now(served["at"]) + 7 * DAY


def test_parse_now() -> None:
    assert parse_now("2027-01-02T03:04:05") == datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_now("2027-01-02T03:04:05+01:00").utcoffset() == timedelta(hours=1)
    assert parse_now(None).tzinfo is not None
    with pytest.raises(InvalidRequestError, match="not an ISO 8601"):
        parse_now("next tuesday")


def test_checkpoints_go_by_their_records_or_by_the_kept_chains(tmp_path: Path) -> None:
    index = CheckpointIndex(tmp_path)
    index.write(IndexEntry("aa01", 0, 0, None, ("a", "b"), "m1"))
    index.write(IndexEntry("aa02", 0, 1, "aa01", ("c",), "m2"))
    index.write(IndexEntry("bb01", 1, 0, None, ("d",), "m3"))
    keys = ["aa01", "aa02", "bb01", "cc01", "dd01"]  # cc01, dd01: not indexed
    chosen = checkpoints_to_purge(keys, index, {"b"}, kept_chains={"cc01"})
    assert chosen == ["aa01", "aa02", "dd01"]  # aa02 saw "b" through its parent
    assert checkpoints_to_purge(keys, index, set(), kept_chains={"cc01", "dd01"}) == []


def test_plan_lists_what_goes_and_the_next_due_date() -> None:
    versions, requests = plan_versions(VERSIONS, REQUESTS, "3", T0 + 31 * DAY)
    plan = PurgePlan(T0 + 31 * DAY, 30, versions, requests, checkpoints=("aa01",))
    assert plan.versions_to_delete == ["1"]
    assert plan.requests_to_close == ["r1"]
    assert plan.next_due == T0 + 40 * DAY
    data = plan.to_dict()
    assert data["delete"] == {
        "versions": ["1"],
        "checkpoints": 1,
        "cache_objects": 0,
        "remote_objects": 0,
        "federation_folders": [],
    }
    assert data["next_due"] == "2027-02-10T00:00:00+00:00"

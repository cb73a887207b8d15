"""The promotion policy over a workspace's ledger and an in-memory registry.

Deletions are recorded as the workflow records them (`received` in the ledger, the keyed
hashes in `forgotten.json`); versions are logged into the registry fake, whose contract
test holds it to MLflow.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.serving.test_registry_contract import PROVENANCE
from tests.workflow.conftest import gate, log_provenance_only, new_root, open_with_fakes, request
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.errors import GateFailedError, UnsafeVersionError
from unlearn_ops.serving.promotion import (
    champion_accuracy,
    honoured_requests,
    missing_deletions,
    promote,
)
from unlearn_ops.serving.versions import CHAMPION, PREVIOUS, VersionInfo
from unlearn_ops.testing import InjectedCrashError, InMemoryRegistry, fail_at
from unlearn_ops.workflow.workspace import Workspace

PASSED = [gate("data", True), gate("metric", True)]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return open_with_fakes(new_root(tmp_path / "ws"))


def receive(ws: Workspace, request_id: str, record_ids: list[str]) -> ForgetRequest:
    """A `received` ledger entry, as `receive_requests` writes it (no ensemble to plan on)."""
    forget_request = request(request_id, record_ids)
    ws.ledger.append(
        "received", request_id, record_hashes=forget_request.record_hashes(ws.settings)
    )
    return forget_request


def forget(ws: Workspace, request_id: str, record_ids: list[str]) -> None:
    """Record a deletion: received in the ledger, its hashes in forgotten.json."""
    forget_request = receive(ws, request_id, record_ids)
    hashes = sorted(ws.ensemble.forgotten_hashes() | set(forget_request.record_hashes(ws.settings)))
    (ws.root / "forgotten.json").write_text(json.dumps({"hashes": hashes}))


def version(ws: Workspace, honoured: list[str], accuracy: float = 0.9) -> VersionInfo:
    provenance = dataclasses.replace(
        PROVENANCE, honoured_request_ids=tuple(honoured), accuracy=accuracy
    )
    return log_provenance_only(ws, provenance)


def test_missing_deletions_keep_the_order_they_were_recorded_in() -> None:
    assert missing_deletions(["r1"], ["r3", "r1", "r2"]) == ["r3", "r2"]
    assert missing_deletions(["r2", "r1", "r3", "r9"], ["r3", "r1", "r2"]) == []


def test_a_deletion_is_honoured_once_all_its_records_are_forgotten(ws: Workspace) -> None:
    forget(ws, "r1", ["1", "2"])
    forget(ws, "r2", ["3"])
    receive(ws, "r3", ["4"])  # received, not applied yet
    assert honoured_requests(ws) == ["r1", "r2"]


def test_the_first_promotion_makes_a_champion_and_the_next_moves_it(ws: Workspace) -> None:
    first = version(ws, [])
    assert promote(ws, first, PASSED) == "1"
    assert ws.registry().aliases() == {CHAMPION: "1"}
    forget(ws, "r1", ["1"])
    second = version(ws, ["r1"])
    assert promote(ws, second, PASSED) == "2"
    assert ws.registry().aliases() == {CHAMPION: "2", PREVIOUS: "1"}
    # Promoting the champion again moves nothing.
    promote(ws, second, PASSED)
    assert ws.registry().aliases() == {CHAMPION: "2", PREVIOUS: "1"}


def test_a_failed_gate_keeps_the_champion(ws: Workspace) -> None:
    promote(ws, version(ws, []), PASSED)
    candidate = version(ws, [])
    with pytest.raises(GateFailedError, match="champion stays at version 1") as caught:
        promote(ws, candidate, [gate("data", True), gate("metric", False)])
    assert "gate 'metric' failed" in str(caught.value)
    assert ws.registry().aliases() == {CHAMPION: "1"}


def test_a_version_that_misses_a_recorded_deletion_is_never_promoted(ws: Workspace) -> None:
    old = version(ws, [])
    promote(ws, old, PASSED)
    forget(ws, "r1", ["1"])
    forget(ws, "r2", ["2"])
    partial = version(ws, ["r1"])
    with pytest.raises(UnsafeVersionError, match=r"version 2 does not honour 1 .*\(r2\)"):
        promote(ws, partial, PASSED)
    with pytest.raises(UnsafeVersionError, match=r"version 1 does not honour 2"):
        promote(ws, old, PASSED)
    assert ws.registry().aliases() == {CHAMPION: "1"}


def test_a_crash_between_the_two_alias_moves_leaves_the_champion(tmp_path: Path) -> None:
    registry = InMemoryRegistry()
    # The first call (`previous`) succeeds, the second (`champion`) fails.
    ws = open_with_fakes(
        new_root(tmp_path / "ws"), registry=fail_at(registry, "set_alias", calls_before=2)
    )
    promote(ws, version(ws, []), PASSED)
    with pytest.raises(InjectedCrashError):
        promote(ws, version(ws, []), PASSED)
    assert registry.aliases() == {CHAMPION: "1", PREVIOUS: "1"}


def test_champion_accuracy_is_the_one_the_champion_recorded(ws: Workspace) -> None:
    assert champion_accuracy(ws) is None
    promote(ws, version(ws, [], accuracy=0.8125), PASSED)
    version(ws, [], accuracy=0.5)
    assert champion_accuracy(ws) == pytest.approx(0.8125)

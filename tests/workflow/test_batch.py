"""A batch of requests before retraining: receive, check, close a no-op, apply."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.serving.test_registry_contract import PROVENANCE
from tests.workflow.conftest import log_provenance_only, request, shard_records
from unlearn_ops.errors import InvalidRequestError, UnknownRecordsError
from unlearn_ops.workflow.batch import (
    apply_batch,
    check_batch,
    close_noop,
    receive_requests,
)
from unlearn_ops.workflow.workspace import Workspace


def register_honouring(ws: Workspace, honoured: list[str], passed: bool = True) -> str:
    provenance = dataclasses.replace(
        PROVENANCE,
        honoured_request_ids=tuple(honoured),
        gates={"data": {"passed": passed}},
    )
    return log_provenance_only(ws, provenance).version


def test_receiving_records_new_requests_once(trained: Workspace) -> None:
    ids = shard_records(trained, 0, 2)
    receive_requests(trained, [request("r1", ids), request("r2", ids[:1])])
    receive_requests(trained, [request("r1", list(reversed(ids)))])  # the same request
    states = trained.ledger.requests()
    assert list(states) == ["r1", "r2"]
    assert sorted(states["r1"].record_hashes) == request("r1", ids).record_hashes(trained.settings)
    assert [e.event for e in trained.ledger.entries()] == ["received", "received"]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], "no requests given"),
        ([request("r1", ["1"]), request("r1", ["2"])], "r1 appear twice"),
    ],
)
def test_a_bad_batch_is_refused_and_writes_nothing(
    trained: Workspace, batch: list[object], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        receive_requests(trained, batch)  # type: ignore[arg-type]
    assert trained.ledger.requests() == {}


def test_a_request_id_replayed_with_other_records_refuses_the_batch(trained: Workspace) -> None:
    first, second = shard_records(trained, 0, 2)
    receive_requests(trained, [request("r1", [first])])
    with pytest.raises(InvalidRequestError, match="received before with other records"):
        receive_requests(trained, [request("r2", [second]), request("r1", [second])])
    assert list(trained.ledger.requests()) == ["r1"]


def test_checking_refuses_unknown_records_and_changes_nothing(trained: Workspace) -> None:
    before = (trained.root / "forgotten.json").read_text()
    with pytest.raises(UnknownRecordsError, match="no-such-record"):
        check_batch(trained, [request("r1", [*shard_records(trained, 0, 1), "no-such-record"])])
    assert (trained.root / "forgotten.json").read_text() == before
    assert trained.ledger.requests() == {}


def test_a_pending_batch_plans_the_shards_it_retrains(trained: Workspace) -> None:
    outcome = check_batch(trained, [request("r1", shard_records(trained, 1, 2))])
    assert not outcome.is_noop
    assert outcome.served_by == {}
    assert [s.shard_id for s in outcome.plan.shards] == [1]


def test_a_request_a_served_version_honours_is_a_noop(trained: Workspace) -> None:
    ids = shard_records(trained, 0, 1)
    register_honouring(trained, ["r1"], passed=False)  # never served: does not count
    assert not check_batch(trained, [request("r1", ids)]).is_noop
    version = register_honouring(trained, ["r1"])
    outcome = check_batch(trained, [request("r1", ids)])
    assert outcome.is_noop
    assert outcome.served_by == {"r1": version}


def test_a_new_request_for_records_forgotten_already_is_closed_on_the_versions(
    trained: Workspace,
) -> None:
    ids = shard_records(trained, 2, 2)
    receive_requests(trained, [request("r1", ids)])
    apply_batch(trained, [request("r1", ids)])
    trained.ledger.append("served", "r1", version="1")
    version = register_honouring(trained, ["r1"])
    later = request("r2", ids[:1])
    outcome = check_batch(trained, [later])
    assert outcome.served_by == {"r2": version}
    receive_requests(trained, [later])
    answer = close_noop(trained, outcome)
    assert answer == {
        "noop": True,
        "served_by": {"r2": version},
        "message": f"request r2 is honoured already by version {version}",
    }
    assert trained.ledger.request("r2").state == "served"  # type: ignore[union-attr]
    info = trained.registry().get_version(version)
    assert info.honoured_requests == ["r1", "r2"]
    assert info.tag("honoured_count") == "2"
    assert json.loads(info.tag("honoured_requests")) == ["r1", "r2"]


def test_applying_removes_the_records_from_their_shards_only(trained: Workspace) -> None:
    ids = shard_records(trained, 1, 2)
    sizes = {s: len(trained.ensemble.read_shard(s)) for s in trained.ensemble.shard_ids}
    plan = apply_batch(trained, [request("r1", ids)])
    assert [s.shard_id for s in plan.shards] == [1]
    after = {s: len(trained.ensemble.read_shard(s)) for s in trained.ensemble.shard_ids}
    assert after == {**sizes, 1: sizes[1] - 2}
    assert trained.ensemble.stale_shards() == [1]
    assert not set(shard_records(trained, 1, 1000)) & set(ids)

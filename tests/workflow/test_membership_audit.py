"""Auditing forget versions for membership through the workspace (ports faked, data real)."""

from __future__ import annotations

import pytest

from tests.workflow.conftest import gate, request, shard_records
from unlearn_ops.errors import VersionNotFoundError
from unlearn_ops.workflow.batch import apply_batch, receive_requests
from unlearn_ops.workflow.membership_audit import (
    AuditOptions,
    NotAForgetVersionError,
    audit_candidate,
    audit_version,
    privacy_gate,
)
from unlearn_ops.workflow.registration import register_version
from unlearn_ops.workflow.retraining import evaluate, train_one_shard
from unlearn_ops.workflow.revisions import mark_applied, record_revision
from unlearn_ops.workflow.workspace import Workspace

PASSED = [gate("data", True), gate("metric", True)]
# Few reference models: enough for the online test to run (its power is tested on
# purpose-built data in tests/privacy/test_membership.py).
REFERENCES = 6
FAST = AuditOptions(resamples=200, references=REFERENCES)


def register(
    ws: Workspace, kind: str, batch: list[object], gates: list[object], trained: object = None
) -> str:
    trained = trained or [train_one_shard(ws, s) for s in ws.ensemble.stale_shards()]
    revision = record_revision(ws, kind, batch)  # type: ignore[arg-type]
    if batch:
        mark_applied(ws, batch, revision)  # type: ignore[arg-type]
    version = register_version(
        ws,
        kind=kind,  # type: ignore[arg-type]
        requests=batch,  # type: ignore[arg-type]
        trained=trained,  # type: ignore[arg-type]
        revision=revision,
        gates=gates,  # type: ignore[arg-type]
        metrics=evaluate(ws),
        timings={},
    )
    return version.version


def test_a_forget_version_is_audited_from_its_models_and_its_parents(trained: Workspace) -> None:
    assert audit_candidate(trained) is None  # nothing registered: no parent
    register(trained, "train", [], PASSED)
    assert audit_candidate(trained) is None  # a parent, but nothing forgotten
    forgotten = shard_records(trained, 1, 12) + shard_records(trained, 2, 8)
    batch = [request("r1", forgotten)]
    receive_requests(trained, batch)
    apply_batch(trained, batch)
    retrained = [train_one_shard(trained, s) for s in trained.ensemble.stale_shards()]

    candidate = audit_candidate(trained, FAST)
    assert candidate is not None
    assert candidate.forgotten == 20
    # Too few held-out records to read the online test's null off (fewer than 1/alpha in
    # the calibration half): the offline test against the other shards, no model trained.
    assert candidate.references == trained.params.sisa.shards - 1
    assert candidate.method == "offline"
    gate_result = privacy_gate(trained, FAST)
    assert gate_result is not None
    assert gate_result.gate == "privacy"
    assert gate_result.passed is (candidate.verdict != "fail")

    version = register(trained, "forget", batch, [*PASSED, gate_result], retrained)
    tags = trained.registry().get_version(version).tags
    assert tags["unlearn.privacy.flagged"].endswith("/20")
    assert tags["unlearn.privacy.verdict"] in {"pass", "fail", "inconclusive"}

    audited = audit_version(trained, version, FAST)
    # The registered version reads the same models and records as the candidate did.
    assert audited.to_dict() == candidate.to_dict()
    assert audit_version(trained, version, FAST, tag=False).to_dict() == audited.to_dict()
    tags = trained.registry().get_version(version).tags
    assert tags["unlearn.privacy.verdict"] == audited.verdict
    assert tags["unlearn.privacy.reason"] == audited.reason
    assert tags["unlearn.privacy.auc"].startswith(f"{audited.auc.value:.3f} [")


def test_versions_that_are_not_forgets_are_refused_in_one_line(trained: Workspace) -> None:
    first = register(trained, "train", [], PASSED)
    with pytest.raises(NotAForgetVersionError, match="it is a `train` version"):
        audit_version(trained, first)
    with pytest.raises(VersionNotFoundError):
        audit_version(trained, "99")

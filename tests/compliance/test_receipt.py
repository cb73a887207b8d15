"""Receipts from audits built on a real ledger: what they state, their signature, what changed."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.conftest import tagged_version
from unlearn_ops.compliance.audit import (
    RequestAudit,
    build_audit,
    covering_requests,
    received_entries,
)
from unlearn_ops.compliance.receipt import (
    EXACT,
    compare_facts,
    receipt_facts,
    render_receipt_html,
    sign_receipt,
    signature_problem,
)
from unlearn_ops.deletion import ledger as ledger_module
from unlearn_ops.deletion.ledger import Ledger
from unlearn_ops.params import ComplianceParams
from unlearn_ops.serving.versions import VersionInfo

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = SecretStr("receipt-key-test-5e1d")
HASHES = ["a" * 64, "b" * 64]
COMPLIANCE = ComplianceParams(deadline_days=30, retention_days=10)


@pytest.fixture(autouse=True)
def _ledger_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ledger entry is written at T0 (served a day after the person asked)."""
    monkeypatch.setattr(ledger_module, "_now", lambda: T0.isoformat(timespec="milliseconds"))


def version(number: str, honoured: list[str], aliases: tuple[str, ...] = ()) -> VersionInfo:
    tags = {
        "request_ids": json.dumps(honoured[-1:]),
        "honoured_requests": json.dumps(honoured),
        "gates_passed": "true",
        "gates": json.dumps({"data": {"passed": True, "outcomes": []}}),
    }
    return tagged_version(number, tags, at=T0, aliases=aliases)


def audit(tmp_path: Path, versions: list[VersionInfo], purged: bool = False) -> RequestAudit:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    if not ledger.path.exists():
        ledger.append(
            "received",
            "dsr-1",
            record_hashes=HASHES,
            reason="GDPR art. 17",
            requested_at=(T0 - timedelta(days=1)).isoformat(),
            signed_by="hmac:crm-2026-11",
        )
        ledger.append("served", "dsr-1", version="2")
    if purged:
        ledger.append("purged", "dsr-1", versions=["1"], deleted_versions=[])
    states = ledger.requests()
    return build_audit(
        states["dsr-1"],
        received_entries(ledger.entries()).get("dsr-1"),
        versions,
        COMPLIANCE,
        now=T0 + timedelta(days=2),
        covering=covering_requests(states["dsr-1"], states),
    )


SERVED = [version("1", []), version("2", ["dsr-1"], ("champion",))]


def issued(tmp_path: Path) -> dict[str, Any]:
    facts = receipt_facts(audit(tmp_path, SERVED), "flow-test", "c" * 64)
    return sign_receipt(facts, KEY, T0 + timedelta(days=2))


def leaves(value: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in leaves(item, (*path, key))]
    return [path]


def test_a_receipt_states_the_facts_and_verifies(tmp_path: Path) -> None:
    document = issued(tmp_path)
    facts = document["receipt"]
    assert facts["request_id"] == "dsr-1"
    assert (facts["records"], facts["first_version"]) == (2, "2")
    assert facts["champion"] == {"version": "2", "honours": True}
    assert facts["exactness"] == {
        "method": "exact",
        "statement": EXACT,
        "certificate_digest": "c" * 64,
    }
    assert facts["purge"]["status"] == "due"
    assert facts["deadline"]["status"] == "met"
    assert signature_problem(document, KEY) is None
    # No record hash (let alone an id), no feature, no secret.
    text = json.dumps(document)
    assert not any(h in text for h in HASHES)
    assert KEY.get_secret_value() not in text


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("version",), 2),
        (("issued_at",), "2026-03-04T12:00:00+00:00"),
        (("signature", "key_id"), "other"),
        (("signature", "value"), "0" * 64),
        (("receipt", "records"), 1),
        (("receipt", "champion", "version"), "1"),
    ],
)
def test_the_same_receipt_with_one_field_changed_does_not_verify(
    tmp_path: Path, path: tuple[str, ...], value: object
) -> None:
    changed = issued(tmp_path)
    target: Any = changed
    for part in path[:-1]:
        target = target[part]
    assert target[path[-1]] != value
    target[path[-1]] = value
    assert signature_problem(changed, KEY) is not None


def test_every_fact_is_covered_by_the_signature(tmp_path: Path) -> None:
    document = issued(tmp_path)
    for field in leaves(document["receipt"]):
        changed = copy.deepcopy(document)
        target: Any = changed["receipt"]
        for part in field[:-1]:
            target = target[part]
        old = target[field[-1]]
        target[field[-1]] = not old if isinstance(old, bool) else f"{old}!"
        problem = signature_problem(changed, KEY) or ""
        assert "changed" in problem, field


def test_another_key_or_no_signature_does_not_verify(tmp_path: Path) -> None:
    document = issued(tmp_path)
    assert signature_problem(document, SecretStr("another-key-0000")) is not None
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    assert signature_problem(unsigned, KEY) == "it carries no signature"


def test_after_a_rollback_the_changed_champion_is_named(tmp_path: Path) -> None:
    document = issued(tmp_path)
    rolled_back = [version("1", [], ("champion",)), version("2", ["dsr-1"], ("previous",))]
    now = receipt_facts(audit(tmp_path, rolled_back), "flow-test")
    assert compare_facts(document["receipt"], now) == [
        "champion: 2 when issued, 1 now",
        "champion honours the request: yes when issued, no now",
    ]


def test_after_a_purge_the_purge_is_named(tmp_path: Path) -> None:
    document = issued(tmp_path)
    now = receipt_facts(audit(tmp_path, SERVED, purged=True), "flow-test")
    changes = compare_facts(document["receipt"], now)
    assert changes[0] == "purge: due when issued, purged now"
    assert changes[1] == "purged at: none when issued, 2026-03-01T12:00:00+00:00 now"
    assert len(changes) == 2


def test_nothing_changed_compares_empty(tmp_path: Path) -> None:
    document = issued(tmp_path)
    now = receipt_facts(audit(tmp_path, SERVED), "flow-test")
    assert compare_facts(document["receipt"], now) == []


def test_the_html_rendering_escapes_and_shows_the_facts(tmp_path: Path) -> None:
    document = issued(tmp_path)
    document["receipt"]["model"] = "<script>alert(1)</script>"
    html = render_receipt_html(document)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "dsr-1" in html
    assert "c" * 64 in html
    assert document["signature"]["value"] in html
    assert "to be deleted by" in html

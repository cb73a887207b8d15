"""Producer keys and receipts end to end: a signed request drained, its receipt, then a rollback
and a purge that `receipt --verify` names. Real MLflow (sqlite), git + DVC and Prefect.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from pipelines.intake import drain_inbox
from pipelines.purge import purge_superseded
from pipelines.train import train_ensemble
from tests.conftest import CliRunner
from tests.pipelines.conftest import make_workspace, set_params
from unlearn_ops.deletion.envelope import sign_request
from unlearn_ops.deletion.receive import Accepted, Refused, receive
from unlearn_ops.workflow.workspace import Workspace

CRM_SECRET = "crm-secret-2026-11-aaaa"
RECEIPT_KEY = "receipt-key-flow-bbbb"


def envelope(request_id: str, record_ids: list[str], key_id: str, secret: str) -> dict[str, object]:
    request = {
        "request_id": request_id,
        "record_ids": record_ids,
        "reason": "GDPR art. 17",
        "requested_at": datetime.now(UTC).isoformat(),
    }
    return sign_request(request, secret, key_id=key_id, producer="crm")


@pytest.mark.slow
def test_a_receipt_verifies_then_names_a_rollback_and_a_purge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner
) -> None:
    keys = tmp_path / "keys.json"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    keys.write_text(
        json.dumps(
            {
                "crm": {
                    "crm-2026-11": {"secret": CRM_SECRET},
                    "crm-2026-10": {"secret": CRM_SECRET + "-old", "valid_until": yesterday},
                }
            }
        )
    )
    keys.chmod(0o600)
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_KEYS_FILE", str(keys))
    monkeypatch.setenv("UNLEARN_OPS_RECEIPT_SIGNING_KEY", RECEIPT_KEY)
    root = make_workspace(tmp_path / "ws")
    train_ensemble(str(root))
    ids = [str(r) for r in pd.read_parquet(root / "data/shards/shard-001.parquet")["record_id"][:2]]
    set_params(root, "training", weight_decay=1e-6)  # version 2 differs from a replay of 1

    ws = Workspace.open(root)
    stale = receive(ws.inbox, envelope("r0", ids, "crm-2026-10", CRM_SECRET + "-old"), source="t")
    assert isinstance(stale, Refused)
    assert stale.kind == "expired-key"
    accepted = receive(ws.inbox, envelope("r1", ids, "crm-2026-11", CRM_SECRET), source="t")
    assert isinstance(accepted, Accepted)
    drained = drain_inbox(str(root))
    assert drained["batches"][0]["version"] == "2"
    entry = ws.inbox.get("r1")
    assert entry is not None
    assert (entry.state, entry.producer, entry.key_id) == ("done", "crm", "crm-2026-11")

    # audit names the key that signed the request, never a secret.
    code, out, err = cli(["audit", "r1", "-w", str(root)])
    assert code == 0, err
    assert "signature: hmac:crm-2026-11" in out
    assert CRM_SECRET not in out + err
    assert ws.ledger.path.exists()
    assert CRM_SECRET not in ws.ledger.path.read_text()

    # With --certify the receipt states the digest of version 2's exactness certificate.
    code, out, err = cli(["receipt", "r1", "--certify", "-w", str(root)])
    assert code == 0, err
    certified = json.loads(out)["receipt"]["exactness"]
    assert certified["method"] == "exact"
    assert len(certified["certificate_digest"]) == 64

    # A replay of version 1 over the current data makes version 3, which honours r1.
    code, _, err = cli(["rollback", "--to", "1", "--replay", "-w", str(root)])
    assert code == 0, err
    receipt = tmp_path / "receipts" / "receipt.json"  # its folder is made
    code, out, err = cli(["receipt", "r1", "-o", str(receipt), "-w", str(root)])
    assert code == 0, err
    assert out.strip() == f"wrote {receipt} and {receipt.with_suffix('.html')}"
    document = json.loads(receipt.read_text())
    facts = document["receipt"]
    assert (facts["first_version"], facts["champion"]) == ("2", {"version": "3", "honours": True})
    assert (facts["records"], facts["purge"]["status"]) == (2, "due")
    text = receipt.read_text() + receipt.with_suffix(".html").read_text()
    assert not any(record_id in json.dumps(facts) for record_id in ids if len(record_id) > 3)
    assert RECEIPT_KEY not in text
    code, out, err = cli(["receipt", "--verify", str(receipt), "-w", str(root)])
    assert (code, out.strip()) == (0, "receipt for r1: valid, and the ledger still agrees"), err

    # One field changed: the signature no longer matches.
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**document, "receipt": {**facts, "records": 1}}))
    code, out, _ = cli(["receipt", "--verify", str(forged), "-w", str(root)])
    assert code == 1
    assert "signature: the signature does not match" in out

    # A rollback to version 2 (it honours r1): the receipt's champion no longer holds.
    code, _, err = cli(["rollback", "-w", str(root)])
    assert code == 0, err
    code, out, _ = cli(["receipt", "--verify", str(receipt), "-w", str(root)])
    assert code == 1
    assert out.splitlines() == [
        "receipt for r1: DOES NOT HOLD",
        "  changed: champion: 3 when issued, 2 now",
    ]

    # A purge after the retention window: the receipt said the purge was still due.
    later = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    purge_superseded(str(root), now=later)
    code, out, _ = cli(["receipt", "--verify", str(receipt), "--json", "-w", str(root)])
    assert code == 1
    check = json.loads(out)
    assert check["signature"] == "valid"
    assert check["changes"][0] == "champion: 3 when issued, 2 now"
    assert "purge: due when issued, purged now" in check["changes"]

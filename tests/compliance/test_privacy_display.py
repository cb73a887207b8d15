"""The membership audit in the request audit and the compliance report (audits built by hand)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np

from tests.compliance.test_audit import T0 as AUDIT_T0
from tests.compliance.test_audit import audit_of, receive, version
from tests.compliance.test_report import PNG_MAGIC, audit, report
from unlearn_ops.compliance.audit_text import describe_audit
from unlearn_ops.compliance.report import render_html
from unlearn_ops.deletion.ledger import Ledger
from unlearn_ops.privacy.membership import audit_tags, score_histogram

HISTOGRAM = score_histogram(
    {
        "forgotten": np.array([0.1, -0.5, 0.3]),
        "negative control": np.array([0.0, 0.2]),
        "positive control": np.array([3.0, 5.5, 20.0]),
    }
)
AUDITED = {
    "verdict": "pass",
    "reason": "0 of 3 forgotten records flagged at alpha=0.01 (at most 0 allowed)",
    "flagged": 0,
    "forgotten": 3,
    "auc": {"value": 0.5, "low": 0.4, "high": 0.6},
    "tpr_at_1pct_fpr": {"value": 0.0, "low": 0.0, "high": 0.0},
    "positive_control_tpr_at_1pct_fpr": {"value": 0.5, "low": 0.2, "high": 0.8},
    "histogram": HISTOGRAM,
}


def test_the_audit_of_a_request_shows_the_verdict_of_its_version(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    receive(ledger, "r1", ["h1"], AUDIT_T0)
    ledger.append("applied", "r1", git_sha="b" * 40, shards_md5="m.dir", shard_md5s={}, tags=[])
    ledger.append("served", "r1", version="2")
    plain = version("2", requests=["r1"], honoured=["r1"], aliases=("champion",))
    now = AUDIT_T0 + timedelta(days=1)
    before = audit_of(ledger, "r1", [plain], now)
    assert before.privacy == {}
    assert before.to_dict()["privacy"] is None
    assert "privacy: not audited (run `unlearn-ops audit-privacy VERSION`)" in describe_audit(
        before
    )
    tags = {f"unlearn.{k}": v for k, v in audit_tags(AUDITED).items()}
    audited = replace(plain, tags={**plain.tags, **tags})
    after = audit_of(ledger, "r1", [audited], now)
    assert after.privacy["version"] == "2"
    assert after.privacy["verdict"] == "pass"
    assert after.to_dict()["privacy"]["flagged"] == "0/3"
    line = next(x for x in describe_audit(after) if x.startswith("privacy: "))
    assert line == (
        "privacy: membership audit of version 2 pass (flagged 0/3, AUC 0.500 [0.400, 0.600], "
        "positive control TPR@1% 0.500 [0.200, 0.800])"
    )


def test_the_report_shows_the_verdicts_and_the_score_plot_only_when_audited() -> None:
    served = audit("r-met", served_after=timedelta(days=2))
    page = render_html(report(served), PNG_MAGIC)
    assert "membership audits" not in page
    privacy = {
        "version": "2",
        **{k.removeprefix("privacy."): v for k, v in audit_tags(AUDITED).items()},
    }
    page = render_html(report(replace(served, privacy=privacy)), PNG_MAGIC)
    assert "<h2>Privacy: membership audits</h2>" in page
    assert "<td>pass</td><td>0/3</td><td>0.500 [0.400, 0.600]</td>" in page
    assert page.count("data:image/png;base64,") == 2  # the timeline and the score plot
    assert json.loads(privacy["histogram"])["positive control"][-1] == 1  # 20.0 clipped in

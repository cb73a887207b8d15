"""The compliance report's rendering, from audits built by hand: no workspace."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from unlearn_ops.compliance.audit import ChainStatus, GateSummary, RequestAudit
from unlearn_ops.compliance.report import (
    ComplianceReport,
    VersionRow,
    parse_period_bound,
    render_html,
    render_markdown,
    write_report,
)
from unlearn_ops.compliance.timeline import render_timeline

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def audit(request_id: str, *, served_after: timedelta | None, purged: bool = False) -> RequestAudit:
    served_at = T0 + served_after if served_after is not None else None
    deadline = T0 + timedelta(days=30)
    status = "pending" if served_at is None else "met" if served_at <= deadline else "missed"
    return RequestAudit(
        request_id=request_id,
        state="served" if served_at else "received",
        received_at=T0,
        requested_at=T0,
        reason="GDPR art. 17",
        record_count=2,
        records_digest="d" * 64,
        validated=True,
        signature=None,
        applied_at=served_at,
        data_revision="b" * 40 if served_at else None,
        parent_revision="a" * 40 if served_at else None,
        data_md5=None,
        versions_made_for=("2",) if served_at else (),
        shards_retrained={1: 0} if served_at else {},
        noop=False,
        first_honouring_version="2" if served_at else None,
        first_honouring_created_at=served_at,
        gates=(GateSummary("data", True, 3, 0),) if served_at else (),
        served_version="2" if served_at else None,
        served_at=served_at,
        exactness=None,
        champion_version="2",
        champion_honours=served_at is not None,
        purged_at=T0 + timedelta(days=40) if purged else None,
        purge={},
        retention_until=served_at + timedelta(days=30) if served_at else None,
        deadline=deadline,
        latency_days=served_after.total_seconds() / 86_400 if served_after else None,
        deadline_status=status,  # type: ignore[arg-type]
    )


def report(*audits: RequestAudit, problems: tuple[str, ...] = ()) -> ComplianceReport:
    versions = (
        VersionRow("1", "train", (), 0, (), True, ("previous",), T0 - timedelta(days=1), "0.9"),
        VersionRow(
            "2",
            "forget",
            ("r-met",),
            1,
            (GateSummary("data", True, 3, 0),),
            True,
            ("champion",),
            T0 + timedelta(days=2),
            "0.9",
        ),
    )
    return ComplianceReport(
        model_name="digits-demo",
        generated_at=T0 + timedelta(days=45),
        since=None,
        until=None,
        deadline_days=30,
        retention_days=30,
        requests=audits,
        versions=versions,
        chain=ChainStatus(7, problems),
    )


@pytest.fixture(scope="module")
def full() -> ComplianceReport:
    return report(
        audit("r-met", served_after=timedelta(days=2), purged=True),
        audit("r-late", served_after=timedelta(days=33)),
        audit("r-open", served_after=None),
    )


def test_counts_and_dict(full: ComplianceReport) -> None:
    assert full.counts() == {
        "requests": 3,
        "met": 1,
        "missed": 1,
        "pending": 1,
        "paused": 0,
        "purged": 1,
    }
    data = full.to_dict()
    assert [r["request_id"] for r in data["requests"]] == ["r-met", "r-late", "r-open"]
    assert data["ledger"] == {"intact": True, "entries": 7, "problems": []}


def test_timeline_is_a_png_with_or_without_requests(full: ComplianceReport) -> None:
    assert render_timeline(full).startswith(PNG_MAGIC)
    assert render_timeline(report()).startswith(PNG_MAGIC)
    # Everything at one instant still gets a usable axis (no singular-limits warning).
    instant = report(replace(audit("r", served_after=timedelta(0)), latency_days=0.0))
    assert render_timeline(instant).startswith(PNG_MAGIC)


def test_html_is_self_contained_and_escaped(full: ComplianceReport) -> None:
    hostile = report(
        *full.requests,
        problems=('line 3: <script>alert("x")</script>',),
    )
    page = render_html(hostile, PNG_MAGIC + b"fake")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "ledger BROKEN: 1 problem(s) in 7 entries" in page
    for request_id in ("r-met", "r-late", "r-open"):
        assert f"<td>{request_id}</td>" in page
    match = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match is not None
    assert base64.b64decode(match.group(1)) == PNG_MAGIC + b"fake"
    assert 'class="missed"' in page
    assert "purged 2026-04-10" in page
    assert "no (retention until 2026-05-03)" in page


def test_markdown_escapes_pipes_and_links_the_png(tmp_path: Path, full: ComplianceReport) -> None:
    text = render_markdown(report(*full.requests, problems=("a | b",)), "r-timeline.png")
    assert "![timeline of requests, versions and latency](r-timeline.png)" in text
    assert "- a \\| b" in text
    assert "| r-late |" in text
    written = write_report(full, tmp_path / "out" / "r.md", "markdown")
    assert [p.name for p in written] == ["r.md", "r-timeline.png"]
    assert written[1].read_bytes().startswith(PNG_MAGIC)
    assert "r-timeline.png" in written[0].read_text()


def test_period_bounds() -> None:
    assert parse_period_bound("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_period_bound("2026-03-01", end=True) == datetime(2026, 3, 2, tzinfo=UTC)
    assert parse_period_bound("2026-03-01T12:00:00", end=True) == T0
    with pytest.raises(ValueError, match="not a date"):
        parse_period_bound("March")


# Pages written by render_html before it became a template (one JSON string each).
GOLDEN_PAGES = Path(__file__).parent / "golden" / "report-pages.json"


def test_html_is_byte_for_byte_the_page_the_python_builder_made(full: ComplianceReport) -> None:
    png = PNG_MAGIC + b"fake\x00\xff"
    hostile = report(*full.requests, problems=('line 3: <script>alert("x")</script>', "it's & <b>"))
    no_versions = replace(report(*full.requests), versions=(), model_name="m<\"'>&")
    pages = {"hostile": hostile, "no-versions": no_versions, "empty": report()}
    expected = json.loads(GOLDEN_PAGES.read_text(encoding="utf-8"))
    assert set(expected) == set(pages)
    for name, case in pages.items():
        assert render_html(case, png) == expected[name], name


def test_the_template_ships_inside_the_package() -> None:
    from importlib.resources import files

    template = files("unlearn_ops.compliance").joinpath("templates", "report.html.j2")
    assert template.is_file()
    assert "{{ title }}" in template.read_text(encoding="utf-8")

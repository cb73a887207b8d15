"""The compliance report: every request received in a period, the versions, the ledger's chain.

One self-contained file, HTML (the timeline embedded as a base64 PNG) or Markdown (the PNG
beside it): per request its life, latency against the deadline and purge; the versions;
the ledger's chain; the timeline (:mod:`~unlearn_ops.compliance.timeline`) and the
privacy section (:mod:`~unlearn_ops.privacy.plots`). :func:`build_report` gathers the data
from a workspace; the rendering functions are pure.

Why this module is long: the HTML page and the Markdown file render the same cells (one
set of cell formatters for both), so the two renderings stay beside the data they share.
"""

from __future__ import annotations

import base64
import functools
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import PlainSerializer

from unlearn_ops.canonical import JsonReady
from unlearn_ops.compliance.audit import (
    ChainStatus,
    GateSummary,
    RecordedVersion,
    RequestAudit,
    audit_requests,
    check_chain,
    gate_summaries,
    recorded_versions,
)
from unlearn_ops.compliance.timeline import render_timeline
from unlearn_ops.serving.provenance import parse_request_list
from unlearn_ops.timestamps import parse_datetime

if TYPE_CHECKING:
    import jinja2
    import markupsafe

    from unlearn_ops.serving.versions import VersionInfo
    from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "ComplianceReport",
    "ReportFormat",
    "VersionRow",
    "build_report",
    "parse_period_bound",
    "render_html",
    "render_markdown",
    "version_rows",
    "write_report",
]

ReportFormat = Literal["html", "markdown"]


@dataclass(frozen=True)
class VersionRow(JsonReady):
    """One version, as the report lists it: registered, or purged (`purged_at` set)."""

    version: str
    kind: str
    request_ids: tuple[str, ...]
    honoured_count: int
    gates: tuple[GateSummary, ...]
    gates_passed: bool
    aliases: tuple[str, ...]
    created_at: Annotated[datetime, PlainSerializer(datetime.isoformat)]
    accuracy: str
    purged_at: Annotated[datetime, PlainSerializer(datetime.isoformat)] | None = None


def version_rows(
    versions: Sequence[VersionInfo], recorded: Mapping[str, RecordedVersion] | None = None
) -> tuple[VersionRow, ...]:
    """The report's rows, oldest first: registered versions, and purged ones.

    A version the registry no longer holds is listed from what the ledger recorded of it
    (:func:`~unlearn_ops.compliance.audit.recorded_versions`), with its purge date; one
    the ledger knows only by number (ledgers before those facts) has no row.
    """
    registered = {v.version for v in versions}
    rows = [
        VersionRow(
            version=kept.version,
            kind=kept.kind,
            request_ids=kept.request_ids,
            honoured_count=kept.honoured_count,
            gates=kept.gates,
            gates_passed=bool(kept.gates_passed),
            aliases=(),
            created_at=kept.registered_at,
            accuracy=kept.accuracy[:6] or "-",
            purged_at=kept.purged_at,
        )
        for kept in (recorded or {}).values()
        if kept.version not in registered and kept.registered_at is not None
    ]
    for info in versions:
        honoured = info.tag("honoured_count", "0")
        rows.append(
            VersionRow(
                version=info.version,
                kind=info.tag("kind") or "-",
                request_ids=tuple(parse_request_list(info.tag("request_ids"))),
                honoured_count=int(honoured) if honoured.isdigit() else 0,
                gates=gate_summaries(info),
                gates_passed=info.gates_passed,
                aliases=tuple(info.aliases),
                created_at=datetime.fromtimestamp(info.created_at / 1000, UTC),
                accuracy=info.tag("accuracy")[:6] or "-",
            )
        )
    return tuple(sorted(rows, key=lambda row: int(row.version) if row.version.isdigit() else 0))


@dataclass(frozen=True)
class ComplianceReport:
    """What a compliance report says; rendered by :func:`render_html` / :func:`render_markdown`.

    Attributes:
        model_name: the registered model.
        generated_at: when the report was made (pending deadlines are judged against it).
        since: first instant of the period (None: from the beginning).
        until: first instant after the period (None: up to now).
        deadline_days: `compliance.deadline_days`.
        retention_days: `compliance.retention_days`.
        requests: the audits of the requests received in the period, oldest first.
        versions: every registered version, and every purged one the ledger recorded.
        chain: the ledger's hash-chain status.
    """

    model_name: str
    generated_at: datetime
    since: datetime | None
    until: datetime | None
    deadline_days: int
    retention_days: int
    requests: tuple[RequestAudit, ...]
    versions: tuple[VersionRow, ...]
    chain: ChainStatus

    def counts(self) -> dict[str, int]:
        """Requests by deadline status, and how many were purged."""
        counts = {
            "requests": len(self.requests),
            "met": 0,
            "missed": 0,
            "pending": 0,
            "paused": 0,  # a legal hold stands (issue 16)
        }
        for audit in self.requests:
            counts[audit.deadline_status] += 1
        counts["purged"] = sum(1 for audit in self.requests if audit.purged_at is not None)
        return counts

    def period(self) -> str:
        """The period in words."""
        start = f"{self.since:%Y-%m-%d %H:%M} UTC" if self.since else "the first request"
        end = f"{self.until:%Y-%m-%d %H:%M} UTC" if self.until else "now"
        return f"from {start} to {end}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "model_name": self.model_name,
            "generated_at": self.generated_at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "deadline_days": self.deadline_days,
            "retention_days": self.retention_days,
            "counts": self.counts(),
            "requests": [audit.to_dict() for audit in self.requests],
            "versions": [row.to_dict() for row in self.versions],
            "ledger": self.chain.to_dict(),
        }


def parse_period_bound(text: str, *, end: bool = False) -> datetime:
    """A `--since`/`--until` value: an ISO date or date-time (UTC when no zone is given).

    A bare date as the end of a period includes that whole day (the bound becomes the
    next midnight), so `--until 2026-03-31` covers March 31.

    Raises:
        ValueError: not an ISO date or date-time.
    """
    parsed = parse_datetime(text)
    if end and len(text.strip()) == 10:  # a bare date: YYYY-MM-DD
        parsed += timedelta(days=1)
    return parsed


def build_report(
    workspace: Workspace,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> ComplianceReport:
    """Gather the report of a workspace: ledger, registry, chain (no certificate is run)."""

    moment = now or datetime.now(UTC)
    versions = workspace.registry().versions()
    audits = audit_requests(workspace, since=since, until=until, now=moment, versions=versions)
    return ComplianceReport(
        model_name=workspace.model_name,
        generated_at=moment,
        since=since,
        until=until,
        deadline_days=workspace.params.compliance.deadline_days,
        retention_days=workspace.params.compliance.retention_days,
        requests=tuple(audits),
        versions=version_rows(versions, recorded_versions(workspace.ledger.entries())),
        chain=check_chain(workspace.ledger),
    )


# ------------------------------------------------------------------------- rendering
def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"


def _latency(audit: RequestAudit) -> str:
    return f"{audit.latency_days:.2f}" if audit.latency_days is not None else "-"


def _purged(audit: RequestAudit) -> str:
    if audit.purged_at is not None:
        return f"purged {audit.purged_at:%Y-%m-%d}"
    if audit.retention_until is not None:
        return f"no (retention until {audit.retention_until:%Y-%m-%d})"
    return "no"


def _deadline(audit: RequestAudit) -> str:
    due = f"{audit.deadline_status} (due {audit.deadline:%Y-%m-%d})"
    if audit.paused_reason is not None:
        due += f"; clock paused by legal hold {audit.paused_reason}"
    elif audit.holds:
        due += f"; clock was paused {audit.paused_days:.2f} days by legal holds"
    if audit.approximate is not None:
        served = f"served approximately by version {audit.approximate.get('version')}"
        due += f"; OVERDUE: {served}, no exact retrain" if audit.overdue else f"; {served}"
    for approval in audit.approvals:
        due += f"; {approval.get('decision')} by {approval.get('approver') or 'rule'}"
        due += f" ({approval.get('rule')})"
    return due


REQUEST_COLUMNS = (
    "request",
    "requested at",
    "received",
    "applied",
    "first honouring version",
    "champion since",
    "latency (days)",
    "deadline",
    "purged",
)
VERSION_COLUMNS = ("version", "kind", "requests", "gates", "aliases", "created", "accuracy")


def _request_cells(audit: RequestAudit) -> list[str]:
    return [
        # Client removals (issue 13) sit beside record deletions, marked.
        f"{audit.request_id} (client removal)" if audit.client_hashes else audit.request_id,
        _when(audit.requested_at),
        _when(audit.received_at),
        _when(audit.applied_at) if audit.applied_at else ("no-op" if audit.noop else "-"),
        audit.first_honouring_version or "-",
        _when(audit.served_at),
        _latency(audit),
        _deadline(audit),
        _purged(audit),
    ]


def _version_cells(row: VersionRow) -> list[str]:
    gates = "; ".join(str(gate) for gate in row.gates) or (
        "passed" if row.gates_passed else "FAILED"
    )
    return [
        row.version,
        row.kind,
        ", ".join(row.request_ids) or "-",
        gates,
        ", ".join(row.aliases) or (f"purged {row.purged_at:%Y-%m-%d}" if row.purged_at else "-"),
        _when(row.created_at),
        row.accuracy,
    ]


def _chain_line(chain: ChainStatus) -> str:
    if chain.intact:
        return f"ledger intact: {chain.entries} entries, hash chain verified"
    return f"ledger BROKEN: {len(chain.problems)} problem(s) in {chain.entries} entries"


def _summary_line(report: ComplianceReport) -> str:
    counts = report.counts()
    return (
        f"{counts['requests']} request(s) received {report.period()}: "
        f"{counts['met']} met the {report.deadline_days}-day deadline, "
        f"{counts['missed']} missed it, {counts['pending']} pending"
        + (f", {counts['paused']} paused by legal holds" if counts["paused"] else "")
        + "; "
        f"{counts['purged']} purged (retention {report.retention_days} days)."
    )


@functools.cache
def _templates() -> jinja2.Environment:
    import jinja2
    import markupsafe

    def escape(value: object) -> markupsafe.Markup:
        # html.escape, as the page has always been escaped (quotes as &quot; and &#x27;);
        # what a macro already rendered is markup and stays as it is.
        if isinstance(value, markupsafe.Markup):
            return value
        return markupsafe.Markup(html.escape(str(value)))  # noqa: S704 (escaped here)

    return jinja2.Environment(
        loader=jinja2.PackageLoader("unlearn_ops.compliance", "templates"),
        autoescape=True,
        finalize=escape,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def render_html(report: ComplianceReport, timeline_png: bytes) -> str:
    """The report as one self-contained HTML page (every string escaped).

    The page is the package's template `compliance/templates/report.html.j2`.
    """
    from unlearn_ops.privacy.plots import privacy_section

    return (
        _templates()
        .get_template("report.html.j2")
        .render(
            title=f"Compliance report: {report.model_name}",
            generated=_when(report.generated_at),
            summary=_summary_line(report),
            request_columns=REQUEST_COLUMNS,
            requests=[_request_cells(a) for a in report.requests],
            request_classes=[a.deadline_status for a in report.requests],
            image=base64.b64encode(timeline_png).decode("ascii"),
            version_columns=VERSION_COLUMNS,
            versions=[_version_cells(row) for row in report.versions],
            intact=report.chain.intact,
            chain=_chain_line(report.chain),
            problems=report.chain.problems,
            **privacy_section(report.requests),
        )
    )


def _markdown_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(_markdown_cell(c) for c in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: ComplianceReport, image_name: str) -> str:
    """The report as Markdown; the timeline is the PNG `image_name` beside the file."""
    lines = [
        f"# Compliance report: {report.model_name}",
        "",
        f"Generated {_when(report.generated_at)} UTC. {_summary_line(report)}",
        "",
        "## Requests",
        "",
    ]
    if report.requests:
        lines += _markdown_table(REQUEST_COLUMNS, [_request_cells(a) for a in report.requests])
    else:
        lines.append("No request was received in the period.")
    lines += ["", "## Timeline", "", f"![timeline of requests, versions and latency]({image_name})"]
    lines += ["", "## Model versions", ""]
    if report.versions:
        lines += _markdown_table(VERSION_COLUMNS, [_version_cells(row) for row in report.versions])
    else:
        lines.append("No version is registered.")
    lines += ["", "## Ledger", "", _chain_line(report.chain)]
    lines += [f"- {_markdown_cell(problem)}" for problem in report.chain.problems]
    return "\n".join(lines) + "\n"


def write_report(
    report: ComplianceReport, output: str | Path, report_format: ReportFormat = "html"
) -> list[Path]:
    """Write the report (and, for Markdown, its timeline PNG beside it); the paths written."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    png = render_timeline(report)
    if report_format == "html":
        output.write_text(render_html(report, png), encoding="utf-8")
        return [output]
    image = output.with_name(f"{output.stem}-timeline.png")
    image.write_bytes(png)
    output.write_text(render_markdown(report, image.name), encoding="utf-8")
    return [output, image]

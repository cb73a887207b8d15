"""Compliance commands: a request's audit, the period report, the purge of superseded data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from unlearn_ops.cli.flow_runs import run_flow
from unlearn_ops.cli.options import (
    JsonOption,
    WorkspaceOption,
    output_option,
    request_argument,
)
from unlearn_ops.cli.output import emit, fail, open_workspace, output_file, writing
from unlearn_ops.timestamps import format_datetime

__all__ = ["audit", "purge", "report"]


def audit(
    request_id: Annotated[
        str | None, request_argument("The request to audit (its id in the ledger).")
    ] = None,
    certify: Annotated[
        bool,
        typer.Option(
            "--certify", help="Also certify the first version that honours it (retrains)."
        ),
    ] = False,
    check_chain: Annotated[
        bool, typer.Option("--check-chain", help="Verify the ledger's hash chain.")
    ] = False,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """A request's life: received, applied, honoured, served, purged, deadline; or the ledger."""
    from unlearn_ops.compliance.audit import audit_request
    from unlearn_ops.compliance.audit import check_chain as verify_ledger
    from unlearn_ops.compliance.audit_text import describe_audit

    if request_id is None and not check_chain:
        fail("give a REQUEST_ID to audit, or --check-chain to verify the ledger")
    ws = open_workspace(workspace)
    data: dict[str, Any] = {}
    lines: list[str] = []
    failed = False
    if check_chain:
        status = verify_ledger(ws.ledger)
        failed = not status.intact
        data["ledger"] = {"path": str(ws.ledger.path), **status.to_dict()}
        lines += [f"{ws.ledger.path.name} {problem}" for problem in status.problems]
        lines.append(
            f"ledger intact: {status.entries} entries"
            if status.intact
            else f"ledger BROKEN: {len(status.problems)} problem(s) in {status.entries} entries"
        )
    if request_id is not None:
        result = audit_request(ws, request_id, certify=certify)
        failed = failed or result.exactness is False
        data["audit"] = result.to_dict()
        lines += describe_audit(result)
    document = data if len(data) > 1 else next(iter(data.values()))
    emit(as_json, document, lambda: typer.echo("\n".join(lines)))
    if failed:
        raise typer.Exit(1)


def report(
    since: Annotated[
        str | None,
        typer.Option(help="Requests received from this day (YYYY-MM-DD, UTC) or ISO date-time."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Up to this day, included (YYYY-MM-DD), or ISO date-time, excluded."),
    ] = None,
    output: Annotated[
        Path | None, output_option("File to write; compliance-report.html (or .md) by default.")
    ] = None,
    report_format: Annotated[
        str | None,
        typer.Option("--format", help="html or markdown; from the output's suffix by default."),
    ] = None,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Compliance report of the requests received in a period: one self-contained file."""
    from unlearn_ops.compliance.report import build_report, parse_period_bound, write_report

    if report_format not in (None, "html", "markdown"):
        fail(f"--format must be html or markdown, got {report_format!r}")
    markdown = report_format == "markdown" or (
        report_format is None and output is not None and output.suffix in (".md", ".markdown")
    )
    bounds = {}
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            try:
                bounds[name] = parse_period_bound(value, end=name == "until")
            except ValueError as exc:
                fail(f"--{name}: {exc}")
    # The default file goes where the command was typed, like a given relative one.
    target = output_file(
        output or Path.cwd() / ("compliance-report.md" if markdown else "compliance-report.html")
    )
    ws = open_workspace(workspace)
    compliance = build_report(ws, since=bounds.get("since"), until=bounds.get("until"))
    with writing(target):
        written = write_report(compliance, target, "markdown" if markdown else "html")
    counts = compliance.counts()
    chain = "intact" if compliance.chain.intact else "BROKEN"

    def lines() -> None:
        typer.echo(
            f"wrote {written[0]}: {counts['requests']} request(s) ({counts['met']} met, "
            f"{counts['missed']} missed, {counts['pending']} pending the deadline), "
            f"{len(compliance.versions)} version(s), ledger {chain}"
        )
        for path in written[1:]:
            typer.echo(f"wrote {path}")

    emit(as_json, {"files": [str(p) for p in written], **compliance.to_dict()}, lines)


def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would go, and when; delete nothing.")
    ] = False,
    now: Annotated[
        str | None,
        typer.Option(help="Judge retention at this ISO date-time (what-if, tests)."),
    ] = None,
    scan: Annotated[
        bool,
        typer.Option("--scan", help="Only scan the stores for files holding forgotten records."),
    ] = False,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Delete superseded versions, DVC objects and checkpoints after compliance.retention_days."""
    from unlearn_ops.compliance import purge as purging

    ws = open_workspace(workspace)
    if scan:
        from unlearn_ops.compliance.scan import scan_workspace

        found = scan_workspace(ws)

        def scan_lines() -> None:
            for finding in found.findings:
                typer.echo(f"{finding.store}: {finding.path}: {finding.reason}")
            for item in found.unverified:
                typer.echo(f"{item['store']}: {item['path']}: not judged ({item['reason']})")
            scanned = sum(found.files_scanned.values())
            verdict = "clean" if found.clean else f"{len(found.findings)} hold forgotten records"
            typer.echo(f"scanned {scanned} files: {verdict}")

        emit(as_json, found.to_dict(), scan_lines)
        if not found.clean:
            raise typer.Exit(1)
        return
    moment = purging.parse_now(now)
    if dry_run:
        plan = purging.purge_workspace(ws, moment, dry_run=True)
        result = {"dry_run": True, **plan.to_dict()}
    else:
        from pipelines.purge import purge_superseded

        result = run_flow(purge_superseded, str(ws.root), moment.isoformat(), False)

    def lines() -> None:
        verb = "would delete" if dry_run else "deleted"
        for fate in result["versions"]:
            if fate["action"] != "keep":
                due = format_datetime(fate["due_at"])
                when = "now" if fate["action"] == "delete" else f"at {due}"
                typer.echo(
                    f"version {fate['version']}: {fate['action']} ({when}): {fate['reason']}"
                )
        for fate in result["requests"]:
            due = format_datetime(fate["due_at"])
            typer.echo(f"request {fate['request_id']}: {fate['status']} (due {due})")
        gone = result.get("executed") or result["delete"]
        typer.echo(
            f"{verb}: versions {', '.join(gone['versions']) or 'none'}, "
            f"{gone['checkpoints']} checkpoint(s), {gone['cache_objects']} DVC cache object(s)"
            + (
                f", {len(gone['federation_folders'])} federation run folder(s)"
                if gone.get("federation_folders")
                else ""
            )
            + (f", next due {format_datetime(result['next_due'])}" if result["next_due"] else "")
        )

    emit(as_json, result, lines)

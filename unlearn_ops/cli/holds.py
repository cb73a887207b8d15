"""The `hold` commands: place, list and release legal holds (:mod:`unlearn_ops.deletion.holds`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from unlearn_ops.cli.options import JsonOption, WorkspaceOption, command_group
from unlearn_ops.cli.output import emit, open_workspace
from unlearn_ops.timestamps import format_datetime

__all__ = ["app"]

app = command_group(
    "Legal holds (GDPR art. 17(3)): records (or a federation's site) that deletion requests "
    "must not erase yet."
)

ActorOption = Annotated[
    str | None,
    typer.Option(help="Who makes the change (kept in the ledger); the OS user by default."),
]


@app.command("add")
def add(
    reason: Annotated[str, typer.Option(help="The legal ground (kept in the ledger).")],
    ids: Annotated[str | None, typer.Option(help="Comma-separated record ids to hold.")] = None,
    subject: Annotated[
        str | None, typer.Option(help="A data subject whose records to hold (subject index).")
    ] = None,
    client: Annotated[
        str | None,
        typer.Option(help="A federation's site (its client id) whose withdrawal to hold."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="End date (YYYY-MM-DD or ISO 8601); none by default.")
    ] = None,
    actor: ActorOption = None,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Hold records (a subject's records, or a federation's site) back from erasure until
    released."""
    from unlearn_ops.deletion.holds import place_hold

    record_ids = [part.strip() for part in ids.split(",") if part.strip()] if ids else []
    ws = open_workspace(workspace)
    with ws.lock():
        hold = place_hold(
            ws,
            record_ids=record_ids,
            subject=subject,
            client=client,
            reason=reason,
            until=until,
            actor=actor,
        )
    data = hold.to_dict()

    def lines() -> None:
        what = (
            "a federation's site"
            if hold.client_hash
            else "a data subject's records"
            if hold.subject_hash
            else f"{data['records']} record(s)"
        )
        end = f" until {format_datetime(data['until'])}" if hold.until else ""
        typer.echo(f"{hold.hold_id}: {what} held{end} ({hold.reason}), by {hold.actor}")

    emit(as_json, data, lines)


@app.command("list")
def list_holds(
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list released and expired holds.")
    ] = False,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """The legal holds standing now (and, with --all, the past ones) and the requests they hold."""
    from unlearn_ops.deletion.holds import fold_holds, held_request_ids

    ws = open_workspace(workspace)
    now = datetime.now(UTC)
    held = held_request_ids(ws)
    rows: list[dict[str, Any]] = []
    for hold in fold_holds(ws.ledger.entries()).values():
        row = hold.to_dict(now)
        if row["status"] != "active" and not show_all:
            continue
        row["holds_requests"] = sorted(r for r, ids in held.items() if hold.hold_id in ids)
        rows.append(row)

    def lines() -> None:
        if not rows:
            typer.echo("no legal hold stands" if not show_all else "no legal hold recorded")
        for row in rows:
            what = (
                "site"
                if row["client"]
                else "subject"
                if row["subject"]
                else f"{row['records']} record(s)"
            )
            end = f", until {format_datetime(row['until'])}" if row["until"] else ""
            waiting = ", ".join(row["holds_requests"]) or "none"
            released = (
                f"; released {format_datetime(row['released_at'])} by {row['released_by']}: "
                f"{row['release_reason'] or '-'}"
                if row["released_at"]
                else ""
            )
            placed = format_datetime(row["placed_at"])
            typer.echo(
                f"{row['hold_id']}  {row['status']:<8}  {what}  placed {placed} "
                f"by {row['placed_by']}{end}: {row['reason']}{released}  "
                f"(requests waiting: {waiting})"
            )

    emit(as_json, {"holds": rows}, lines)


@app.command("release")
def release(
    hold_id: Annotated[str, typer.Argument(metavar="HOLD_ID", help="The hold to release.")],
    reason: Annotated[str, typer.Option(help="Why it ends (kept in the ledger).")] = "",
    actor: ActorOption = None,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Release a hold: the requests it held are queued again (the next drain serves them)."""
    from unlearn_ops.deletion.holds import release_hold

    ws = open_workspace(workspace)
    with ws.lock():
        done = release_hold(ws, hold_id, reason=reason, actor=actor)

    def lines() -> None:
        typer.echo(f"{hold_id} released by {done.hold.released_by}")
        if done.queued:
            typer.echo(f"queued again (the next drain serves them): {', '.join(done.queued)}")
        if done.rerun:
            typer.echo(
                "made with `unlearn-ops forget` or `federation remove`, run them again: "
                + ", ".join(done.rerun)
            )
        if done.still_held:
            typer.echo(f"still held by another hold: {', '.join(done.still_held)}")

    emit(as_json, done.to_dict(), lines)

"""Deletion events: sign and submit requests as a privacy system would; inbox, listen, serve."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from unlearn_ops.cli.flow_runs import run_flow
from unlearn_ops.cli.options import JsonOption, WorkspaceOption
from unlearn_ops.cli.output import emit, fail, open_workspace
from unlearn_ops.errors import InvalidRequestError

if TYPE_CHECKING:
    from unlearn_ops.deletion.inbox import InboxEntry

__all__ = ["inbox", "listen", "serve", "sign", "submit"]


def _read_json_file(path: Path) -> dict[str, Any]:
    from unlearn_ops.deletion.envelope import parse_json_object

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path} ({exc.strerror})") from exc
    return parse_json_object(data)


def sign(
    request_file: Annotated[
        Path,
        typer.Argument(
            help="A request as JSON: request_id, record_ids or subject_id (or client_id: a "
            "federation client's withdrawal), reason.",
            resolve_path=True,
        ),
    ],
    key_id: Annotated[
        str | None,
        typer.Option(
            help="Sign with this producer key of UNLEARN_OPS_REQUEST_KEYS_FILE (the envelope "
            "then names its producer); default: UNLEARN_OPS_REQUEST_SIGNING_KEY."
        ),
    ] = None,
) -> None:
    """Sign a request as a producer would: print the envelope to send."""
    from unlearn_ops.deletion.envelope import sign_request, verify_request
    from unlearn_ops.deletion.keys import DEFAULT_KEY_ID, load_key_ring
    from unlearn_ops.settings import load_settings

    settings = load_settings()
    ring = load_key_ring(settings)
    key = ring.get(key_id or DEFAULT_KEY_ID)
    if key is None and key_id is None:
        fail("UNLEARN_OPS_REQUEST_SIGNING_KEY is not set: there is no key to sign with")
    if key is None:
        known = ", ".join(sorted(ring.keys)) or "none"
        fail(f"key id {key_id!r} is not in UNLEARN_OPS_REQUEST_KEYS_FILE; keys: {known}")
    request = _read_json_file(request_file)
    request.setdefault("requested_at", datetime.now(UTC).isoformat())
    envelope = sign_request(
        request,
        key.secret.get_secret_value(),
        key_id=key.key_id,
        producer=None if key_id is None else key.producer,
    )
    verify_request(envelope, settings, keys=ring)  # refuse to sign what the intake would refuse
    typer.echo(json.dumps(envelope, indent=2))


def submit(
    envelope_file: Annotated[
        Path,
        typer.Argument(help="A signed request (`unlearn-ops sign`).", resolve_path=True),
    ],
    via: Annotated[
        str, typer.Option(help="`s3` (drop it in the intake bucket) or `event` (Prefect).")
    ] = "s3",
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Send a signed request as a privacy system would: an S3 file or a Prefect event.

    The envelope is checked first, as the intake will check it (its signature too, when
    UNLEARN_OPS_REQUEST_SIGNING_KEY or a key file is set here): a request it would refuse
    is not sent.
    """
    from unlearn_ops.deletion.envelope import parse_envelope, verify_request
    from unlearn_ops.settings import load_settings

    if via not in ("s3", "event"):
        fail(f"--via must be s3 or event, got {via!r}")
    envelope = _read_json_file(envelope_file)
    settings = load_settings()
    if settings.request_signing_key is None and settings.request_keys_file is None:
        parse_envelope(envelope)
    else:
        verify_request(envelope, settings)
    if via == "s3":
        from unlearn_ops.adapters.aws.s3_intake import S3Intake

        key = S3Intake.from_settings(settings).submit(envelope)
        typer.echo(f"dropped s3://{settings.intake_bucket}/{key}")
    elif via == "event":
        from pipelines.intake import emit_deletion_request
        from unlearn_ops.adapters.prefect.events import flush_events

        event_id = emit_deletion_request(open_workspace(workspace), envelope)
        flush_events(timeout=30)  # sent before this process ends
        typer.echo(f"emitted unlearn.deletion.requested {event_id}")


def inbox(
    retry: Annotated[
        str | None, typer.Option(help="Put this failed request back to pending.")
    ] = None,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """The inbox: requests received and their state, and the deliveries refused."""
    ws = open_workspace(workspace)
    if retry is not None:
        entry = ws.inbox.retry(retry)
        typer.echo(f"request {entry.request_id}: {entry.state}")
        return
    entries = ws.inbox.entries()
    rejections = ws.inbox.rejections()
    data: dict[str, Any] = {
        "counts": ws.inbox.counts(),
        "requests": [e.to_dict() for e in entries],
        "rejected": [r.__dict__ for r in rejections],
    }

    def lines() -> None:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(data["counts"].items())) or "empty"
        typer.echo(f"inbox {ws.inbox.path}: {counts}")
        for entry in entries:
            outcome = entry.outcome or {}
            detail = outcome.get("version") or outcome.get("reason") or ""
            typer.echo(
                f"  {entry.request_id:<32} {entry.state:<10} {_size(entry)}"
                f"  {entry.source}  {detail}"
            )
        for rejection in rejections[-20:]:
            typer.echo(f"  refused {rejection.at} {rejection.source}: {rejection.kind}")

    emit(as_json, data, lines)


def _size(entry: InboxEntry) -> str:
    """`   12 records`, or `    1 client ` for a federation client's withdrawal."""
    return "    1 client " if entry.client_hash else f"{len(entry.record_hashes):>5} records"


def listen(
    once: Annotated[
        bool, typer.Option("--once", help="Stop when the queue is empty and all is drained.")
    ] = False,
    http: Annotated[
        str | None,
        typer.Option(
            help="Also accept requests over HTTP on HOST:PORT (POST /v1/deletion-requests; "
            "GET /v1/deletion-requests/ID for their state and receipt)."
        ),
    ] = None,
    wait_seconds: Annotated[int, typer.Option(help="SQS long-poll seconds.", min=0, max=20)] = 5,
    visibility_timeout: Annotated[
        int,
        typer.Option(
            help="Seconds a received message stays hidden; unacknowledged, it comes back.",
            min=1,
            max=43200,
        ),
    ] = 60,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Receive deletion requests (S3 files via SQS, HTTP) and forget them, burst by burst."""
    import threading

    from pipelines.intake import drain_inbox
    from unlearn_ops.deletion.keys import load_key_ring
    from unlearn_ops.deletion.listener import listen as run_listener

    ws = open_workspace(workspace)
    load_key_ring(ws.settings)  # a bad key file is one error now, not a refusal per request
    s3 = None
    if ws.settings.intake_queue_url or ws.settings.intake_bucket:
        from unlearn_ops.adapters.aws.s3_intake import S3Intake

        s3 = S3Intake.from_settings(ws.settings)
    arrived = threading.Event()
    server = None
    if http is not None:
        from unlearn_ops.adapters.http.intake import HttpIntake

        host, _, port = http.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            fail(f"--http must be HOST:PORT with a port from 0 to 65535, got {http!r}")
        from unlearn_ops.compliance.receipt import issue_receipt

        server = HttpIntake(
            ws.inbox,
            ws.settings,
            host=host,
            port=int(port),
            on_accepted=lambda _: arrived.set(),
            receipt_for=(lambda request_id: issue_receipt(ws, request_id))
            if ws.settings.receipt_signing_key is not None
            else None,
        )
        server.start()
        typer.echo(f"HTTP intake on {server.url}", err=True)
    if s3 is None and server is None:
        fail(
            "nothing to listen to: set UNLEARN_OPS_INTAKE_BUCKET and UNLEARN_OPS_INTAKE_QUEUE_URL,"
            " or pass --http HOST:PORT"
        )

    def drained(answer: dict[str, Any]) -> None:
        for batch in answer.get("batches", []):
            typer.echo(
                f"forgot {len(batch.get('requests', []))} request(s): "
                f"version {batch.get('version') or batch.get('served_by')}",
                err=True,
            )
        for request_id, version in answer.get("withdrawals", {}).items():
            typer.echo(f"removed the client of request {request_id}: version {version}", err=True)
        for request_id, reason in answer.get("failed", {}).items():
            typer.echo(f"request {request_id} failed: {reason}", err=True)
        for request_id, reason in answer.get("held", {}).items():
            typer.echo(f"request {request_id} under legal hold: {reason}", err=True)

    try:
        summary = run_listener(
            ws,
            s3=s3,
            http=server,
            arrived=arrived,
            drain=lambda: run_flow(drain_inbox, str(ws.root)),
            once=once,
            wait_seconds=wait_seconds,
            visibility_timeout=visibility_timeout,
            on_drained=drained,
        )
    finally:
        if server is not None:
            server.stop()
    emit(
        as_json,
        summary.to_dict(),
        lambda: typer.echo(
            f"accepted {summary.received.accepted}, duplicates {summary.received.duplicates}, "
            f"refused {summary.received.refused}; {summary.drains} drain(s), "
            f"{summary.batches} retraining run(s)"
        ),
    )


def serve(
    sweep_seconds: Annotated[
        float, typer.Option(help="Also drain on this interval (finishes interrupted work).")
    ] = 600.0,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Serve the forget flow as a Prefect deployment triggered by `unlearn.deletion.requested`."""
    if not os.environ.get("PREFECT_API_URL"):
        fail(
            "PREFECT_API_URL is not set: a deployment needs a Prefect server that outlives "
            "this process (start one with infra/launcher.py or `prefect server start`)"
        )
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
    from pipelines.intake import deployment_for, resource_id, serve_deployment

    ws = open_workspace(workspace)
    deployment = deployment_for(ws, sweep_seconds=sweep_seconds or None)
    typer.echo(
        f"serving {deployment.name}: events unlearn.deletion.requested on {resource_id(ws)}",
        err=True,
    )
    serve_deployment(deployment)

"""The receipt command: a signed statement for a data subject, and its verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from unlearn_ops.cli.options import (
    JsonOption,
    WorkspaceOption,
    output_option,
    request_argument,
)
from unlearn_ops.cli.output import emit, fail, open_workspace, output_file, writing

__all__ = ["receipt"]


def _read_receipt(path: Path) -> dict[str, Any]:
    from unlearn_ops.errors import ReceiptError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReceiptError(str(path), f"cannot read it ({exc.strerror})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReceiptError(str(path), "it is not JSON") from exc
    if not isinstance(data, dict):
        raise ReceiptError(str(path), "it is not a receipt (not a JSON object)")
    return data


def receipt(
    request_id: Annotated[
        str | None, request_argument("The served request to issue a receipt for.")
    ] = None,
    output: Annotated[
        Path | None,
        output_option(
            "Write the receipt here (JSON) and its HTML rendering beside it (.html); "
            "default: print the JSON."
        ),
    ] = None,
    verify: Annotated[
        Path | None,
        typer.Option(
            "--verify",
            help="Check this receipt: its signature, and that ledger and registry still agree.",
            resolve_path=True,
        ),
    ] = None,
    certify: Annotated[
        bool,
        typer.Option(
            "--certify", help="State the exactness certificate's digest (retrains its shards)."
        ),
    ] = False,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """A signed receipt that a request was carried out, for the person; or --verify one."""
    from unlearn_ops.compliance.receipt import check_receipt, issue_receipt, render_receipt_html

    if (request_id is None) == (verify is None):
        fail("give a REQUEST_ID to issue a receipt for, or --verify FILE to check one")
    if output is not None and request_id is not None:
        output_file(output)  # before the receipt is made (--certify retrains shards)
    ws = open_workspace(workspace)
    if request_id is None and verify is not None:
        check = check_receipt(ws, _read_receipt(verify))

        def lines() -> None:
            if check.passed:
                typer.echo(f"receipt for {check.request_id}: valid, and the ledger still agrees")
                return
            typer.echo(f"receipt for {check.request_id}: DOES NOT HOLD")
            if check.signature_problem is not None:
                typer.echo(f"  signature: {check.signature_problem}")
            for change in check.changes:
                typer.echo(f"  changed: {change}")

        emit(as_json, check.to_dict(), lines)
        if not check.passed:
            raise typer.Exit(1)
        return
    if request_id is None:  # unreachable: checked above (for the type checker)
        return
    document = issue_receipt(ws, request_id, certify=certify)
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    html = output.with_suffix(".html") if output.suffix != ".html" else output.with_suffix(".htm")
    with writing(output):
        output.write_text(text, encoding="utf-8")
        html.write_text(render_receipt_html(document), encoding="utf-8")
    emit(
        as_json,
        {"request_id": request_id, "json": str(output), "html": str(html)},
        lambda: typer.echo(f"wrote {output} and {html}"),
    )

"""Commands that look at the registered versions: versions, show, verify, and the MLflow UI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from unlearn_ops.cli.options import JsonOption, WorkspaceOption
from unlearn_ops.cli.output import emit, fail, int_list, open_workspace, version_row

__all__ = ["show", "ui", "verify", "versions"]


TAG_SHOWN = 160  # characters of a tag value on the terminal; --json gives them whole


def shorten_tag(value: str) -> str:
    """A tag value for the terminal: long ones (the gates' JSON) cut, saying how to see all."""
    if len(value) <= TAG_SHOWN:
        return value
    return f"{value[:TAG_SHOWN]}… ({len(value):,} characters; --json shows it whole)"


def versions(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """The registered versions: aliases, requests honoured, gates."""

    from unlearn_ops.workflow.approx_tags import describe_exactness

    ws = open_workspace(workspace)
    found = ws.registry().versions()
    rows = [version_row(v) for v in found]
    if ws.params.monolithic:  # provisional or exact, in plain words (issue 14)
        rows = [
            {**r, "exactness": describe_exactness(v) or "-"}
            for r, v in zip(rows, found, strict=True)
        ]

    def lines() -> None:
        if not rows:
            typer.echo(f"no versions of {ws.model_name} yet: run `unlearn-ops train`")
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{ws.model_name} ({ws.tracking_uri})")
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        # Not a terminal (a pipe, a log): wide enough that no column is cut.
        Console(width=None if sys.stdout.isatty() else 160).print(table)
        if purged:
            typer.echo(
                f"purged: version(s) {', '.join(sorted(purged, key=int))}, which held "
                "what requests asked to forget: records, or a federation client's data "
                "(`unlearn-ops audit REQUEST`)"
            )

    purged = ws.ledger.purged_versions()
    emit(
        as_json,
        {
            "model_name": ws.model_name,
            "versions": rows,
            "purged": [
                {"version": v, "purged_at": at, "requests": list(requests)}
                for v, (at, requests) in sorted(purged.items(), key=lambda item: int(item[0]))
            ],
        },
        lines,
    )


def show(
    version: Annotated[str, typer.Argument(help="Version number or alias (champion).")],
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """One version: its description and provenance tags."""

    from unlearn_ops.workflow.approx_tags import describe_exactness

    info = open_workspace(workspace).find_version(version)
    exactness = describe_exactness(info)

    def lines() -> None:
        aliases = f" ({', '.join(info.aliases)})" if info.aliases else ""
        typer.echo(f"version {info.version}{aliases}")
        typer.echo(info.description)
        if exactness is not None:
            typer.echo(exactness)
        for key, value in sorted(info.tags.items()):
            typer.echo(f"  {key} = {shorten_tag(value)}")

    emit(as_json, {**info.to_dict(), **({"exactness": exactness} if exactness else {})}, lines)


def verify(
    version: Annotated[
        str | None,
        typer.Argument(help="Version or alias; the workspace's current state if absent."),
    ] = None,
    shards: Annotated[
        str | None, typer.Option(help="Comma-separated shard ids; all shards by default.")
    ] = None,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Exactness certificate: retrain shards from scratch and compare weights bit for bit."""
    from unlearn_ops.sisa.verification import certify_exactness
    from unlearn_ops.workflow.certification import certify_version

    ws = open_workspace(workspace)
    shard_ids = int_list(shards, "--shards")
    if shard_ids is not None:
        bad = [s for s in shard_ids if s not in ws.ensemble.shard_ids]
        if bad:
            fail(f"no shard {bad[0]}: shards are 0..{len(ws.ensemble.shard_ids) - 1}")
    if ws.settings.task_runner == "dask":  # the retrainings go to the cluster (issue 15)
        from pipelines.certify import certify_shards
        from unlearn_ops.cli.flow_runs import run_flow

        certificate = run_flow(certify_shards, str(ws.root), version, shard_ids)
    elif version is None:
        certificate = certify_exactness(ws.ensemble, shard_ids)
    else:
        certificate = certify_version(ws, version, shard_ids)

    def lines() -> None:
        for shard in certificate.shards:
            mark = "exact" if shard.exact else "DIFFERS"
            why = [
                text
                for failed, text in (
                    (not shard.recorded_match, "served weights are not the ones recorded"),
                    (not shard.keys_match, "trained on other data than the shard holds"),
                    (shard.forgotten_present > 0, f"{shard.forgotten_present} forgotten ids"),
                )
                if failed
            ]
            typer.echo(
                f"shard {shard.shard_id}: {mark} ({shard.num_records} records, "
                f"weights {shard.served_hash[:12] or '-'} vs scratch {shard.scratch_hash[:12]})"
                + (f": {'; '.join(why)}" if why else "")
            )
        subject = f"version {version}" if version else "the workspace's served ensemble"
        verdict = "PASSED" if certificate.passed else "FAILED"
        typer.echo(f"exactness certificate for {subject} {verdict} in {certificate.seconds:.1f} s")

    emit(as_json, certificate.to_dict(), lines)
    if not certificate.passed:
        raise typer.Exit(1)


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port of the UI.")] = 5050,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Start the MLflow UI on the workspace's store and print the champion's page (Ctrl-C stops)."""
    from unlearn_ops.adapters.mlflow.ui import MlflowUiServer, page_url
    from unlearn_ops.serving.versions import CHAMPION

    ws = open_workspace(workspace)
    champion = ws.registry().alias_version(CHAMPION)
    if ws.tracking_uri.startswith(("http://", "https://")):
        # The store is served already: that server's UI shows the lineage; start nothing.
        typer.echo(f"the store is a server: {page_url(ws.tracking_uri, ws.model_name, champion)}")
        return
    server = MlflowUiServer(
        ws.tracking_uri,
        ws.artifact_location,
        host=host,
        port=port,
        registry_store_uri=ws.registry_uri,
    )

    def ready() -> None:
        typer.echo(f"MLflow UI at {server.url} on {ws.tracking_uri}; Ctrl-C stops it")
        where = "no champion yet" if champion is None else f"champion, version {champion}"
        typer.echo(f"{where}: {page_url(server.url, ws.model_name, champion)}")

    code = server.serve_until_interrupted(on_ready=ready)
    typer.echo("MLflow UI stopped")
    if code:
        fail(f"the MLflow UI server exited on its own with code {code}")

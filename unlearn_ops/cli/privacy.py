"""The `audit-privacy` command: the membership audit of one forget version, with its controls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unlearn_ops.cli.options import JsonOption, WorkspaceOption
from unlearn_ops.cli.output import emit, open_workspace
from unlearn_ops.privacy.references import DEFAULT_REFERENCES

__all__ = ["audit_privacy"]


def audit_privacy(
    version: Annotated[str, typer.Argument(help="A forget version's number or alias.")],
    alpha: Annotated[
        float, typer.Option(min=1e-6, max=0.5, help="Per-record level of the test.")
    ] = 0.01,
    resamples: Annotated[
        int, typer.Option(min=10, help="Bootstrap resamples per confidence interval.")
    ] = 1000,
    seed: Annotated[
        int, typer.Option(min=0, help="Seed of the bootstrap and of the reference models.")
    ] = 0,
    references: Annotated[
        int,
        typer.Option(
            min=0,
            help="Reference models trained IN and OUT of each record (online LiRA; cached "
            "by content key); 0: offline, against the other shards' models only.",
        ),
    ] = DEFAULT_REFERENCES,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Membership audit of a forget version: do its models still remember the records?

    Online LiRA against reference models trained with and without each record (offline
    against the other shards' models when the held-out set is too small), with a positive
    control (the parent version, which trained on the records) and a negative control
    (held-out records).
    Tags the version `unlearn.privacy.*`; exits 1 on a `fail` verdict.
    """
    from unlearn_ops.workflow.membership_audit import AuditOptions, audit_version

    ws = open_workspace(workspace)
    options = AuditOptions(alpha=alpha, resamples=resamples, seed=seed, references=references)
    audit = audit_version(ws, version, options)
    data = {"version": version, **audit.to_dict()}

    def lines() -> None:
        typer.echo(f"membership audit of version {version}: {audit.verdict.upper()}")
        typer.echo(f"  {audit.reason}")
        typer.echo(
            f"  forgotten records: {audit.forgotten}, held-out records: {audit.heldout} "
            f"(negative control), reference models per record: {audit.references} "
            f"({audit.method} test)"
        )
        typer.echo(f"  flagged at alpha={alpha}: {audit.flagged} (at most {audit.allowed})")
        typer.echo(f"  AUC forgotten vs held-out: {audit.auc}")
        typer.echo(f"  TPR at 1% FPR: {audit.tpr_1}")
        typer.echo(f"  TPR at 0.1% FPR: {audit.tpr_01}")
        typer.echo(f"  held-out records flagged (negative control): {audit.heldout_fpr}")
        control = audit.control_tpr_1 if audit.control_tpr_1 is not None else "not measured"
        typer.echo(f"  positive control (parent version) TPR at 1% FPR: {control}")
        if audit.control_auc is not None:
            typer.echo(f"  positive control AUC: {audit.control_auc}")

    emit(as_json, data, lines)
    if audit.verdict == "fail":
        raise typer.Exit(1)

"""What the commands print: one JSON document or lines, errors as one line, progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from unlearn_ops.serving.versions import VersionInfo
    from unlearn_ops.sisa.planning import RetrainingPlan
    from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "emit",
    "fail",
    "open_workspace",
    "output_file",
    "print_plan",
    "shard_progress",
    "version_row",
    "writing",
]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: message` on stderr and end the command with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def int_list(text: str | None, option: str) -> list[int] | None:
    """`--shards 0,3`-style text as integers (None when the option is absent); else exit 2."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        fail(f"{option} must be comma-separated integers, got {text!r}")


def emit(as_json: bool, data: dict[str, Any], lines: Callable[[], None]) -> None:
    """Print `data` as one JSON document with `--json`, else call `lines` to print text."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        lines()


def output_file(path: Path, option: str = "--output") -> Path:
    """A file the user asked to be written: refused when it is a folder, its folder made.

    Call it before the work whose result goes there, so a bad path costs nothing.
    """
    if path.is_dir():
        fail(f"{option} {path} is a folder: name a file in it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{option} {path}: cannot make its folder ({exc.strerror or exc})")
    return path


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Writes to `path` (and files beside it) whose OS errors end the command in one line."""
    try:
        yield
    except OSError as exc:
        fail(f"cannot write {exc.filename or path}: {exc.strerror or exc}")


def open_workspace(start: Path) -> Workspace:
    """The workspace containing `start` (a directory the user named, or the current one)."""
    from unlearn_ops.workflow.workspace import Workspace, find_workspace

    return Workspace.open(find_workspace(start))


@contextmanager
def shard_progress(enabled: bool, shard_ids: list[int], stages: int) -> Iterator[None]:
    """A progress bar per shard on stderr (stages done of R); nothing when not a terminal.

    For the duration, the stages that training reports (:mod:`unlearn_ops.sisa.progress`)
    advance the bars; with no bars, they go nowhere.
    """
    from unlearn_ops.sisa.progress import reporting

    if not enabled or not shard_ids or not sys.stderr.isatty():
        with reporting(None):
            yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        tasks = {s: progress.add_task(f"shard {s}", total=stages) for s in shard_ids}

        def advance(shard_id: int, stage: int, total: int) -> None:
            progress.update(tasks[shard_id], completed=stage + 1)

        with reporting(advance):
            yield


def print_plan(plan: RetrainingPlan) -> None:
    """What a forget retrains: shards, stages and the cost against a full retrain."""
    if plan.already_forgotten:
        count = len(plan.already_forgotten)
        typer.echo(f"{count} id(s) forgotten before (no-op for them)")
    if plan.holdout_records:
        typer.echo(f"{plan.holdout_records} id(s) of held-out records (removed, no retraining)")
    for shard in plan.shards:
        typer.echo(
            f"shard {shard.shard_id}: {shard.num_records} record(s), retrain stages "
            f"{shard.first_stage}..{shard.stages - 1} ({shard.stages_to_train} of {shard.stages})"
        )
    typer.echo(
        f"retraining cost: {plan.fraction:.1%} of a full retrain "
        f"(compute bound on the speed-up: {plan.compute_bound:.1f}x)"
        if plan.shards
        else "no shard needs retraining"
    )


def version_row(info: VersionInfo) -> dict[str, Any]:
    """One row of `unlearn-ops versions`."""
    requests = info.request_ids
    return {
        "version": info.version,
        "aliases": ",".join(info.aliases),
        "kind": info.tag("kind"),
        "requests": ",".join(requests) if requests else "-",
        "honours": int(info.tag("honoured_count", "0") or 0),
        "gates": "passed" if info.gates_passed else "FAILED",
        "accuracy": info.tag("accuracy")[:6],
        "created": datetime.fromtimestamp(info.created_at / 1000, UTC).strftime("%Y-%m-%d %H:%M"),
    }

"""The `unlearn-ops` command line: thin over the library, one clear line per error.

Heavy libraries (torch, pandas) load inside the commands, so `unlearn-ops --help` is fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from unlearn_ops.errors import InvalidRequestError, UnlearnOpsError

if TYPE_CHECKING:
    from unlearn_ops.ensemble import SisaEnsemble
    from unlearn_ops.params import Params
    from unlearn_ops.training import StageProgress

__all__ = ["app", "main"]

app = typer.Typer(
    name="unlearn-ops",
    help="Make trained models forget records exactly (SISA), with provenance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PARAMS_FILE = "params.yaml"

WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace directory (holds params.yaml); the current directory by default.",
        envvar="UNLEARN_OPS_WORKSPACE",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _emit(as_json: bool, data: dict[str, Any], lines: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        lines()


def _load_workspace(workspace: Path) -> tuple[Params, SisaEnsemble]:
    from unlearn_ops.ensemble import SisaEnsemble
    from unlearn_ops.params import load_params
    from unlearn_ops.settings import load_settings

    params_path = workspace / PARAMS_FILE
    if not params_path.is_file():
        _fail(
            f"no workspace at {workspace.resolve()}: {PARAMS_FILE} not found; "
            "create one with `unlearn-ops init DIR` or pass --workspace DIR"
        )
    params = load_params(params_path)
    return params, SisaEnsemble(workspace, params, load_settings())


@contextmanager
def _shard_progress(enabled: bool, shard_ids: list[int], stages: int) -> Iterator[StageProgress]:
    """A progress bar per shard on stderr (stages done of R), or nothing."""
    if not enabled or not shard_ids:
        yield lambda shard_id, stage, total: None
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

        yield advance


def _parse_ids(ids: str | None, ids_file: Path | None) -> list[str]:
    if (ids is None) == (ids_file is None):
        raise InvalidRequestError("give exactly one of --ids and --ids-file")
    if ids is not None:
        values = [part.strip() for part in ids.split(",")]
    elif ids_file is not None:
        try:
            text = ids_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidRequestError(f"cannot read ids file {ids_file} ({exc})") from exc
        if ids_file.suffix == ".json":
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidRequestError(
                    f"ids file {ids_file} is not valid JSON ({exc.msg} at line {exc.lineno})",
                    "give a JSON list of ids, or one id per line in a .txt file",
                ) from exc
            if not isinstance(loaded, list) or not all(
                isinstance(v, str | int) and not isinstance(v, bool) for v in loaded
            ):
                raise InvalidRequestError(
                    f"ids file {ids_file} must hold a JSON list of strings or integers"
                )
            values = [str(v) for v in loaded]
        else:
            values = [line.strip() for line in text.splitlines()]
            values = [v for v in values if v and not v.startswith("#")]
    if any(not v for v in values) and ids is not None:
        raise InvalidRequestError(f"empty id in --ids {ids!r}", "separate ids with single commas")
    if not values:
        raise InvalidRequestError("no record ids given", "pass at least one id to forget")
    return values


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create or fill.")],
    dataset: Annotated[
        str, typer.Option(help="Built-in dataset name (digits, mnist-5k) or a CSV/parquet path.")
    ] = "digits",
    shards: Annotated[int, typer.Option(min=1, help="S: number of shards.")] = 8,
    slices: Annotated[int, typer.Option(min=1, help="R: slices per shard.")] = 4,
    as_json: JsonOption = False,
) -> None:
    """Create a workspace: a params.yaml with the dataset and SISA settings."""
    from unlearn_ops.params import Params

    params_path = directory / PARAMS_FILE
    if params_path.exists():
        _fail(f"{params_path} exists already; edit it, or init another directory")
    params = Params.from_mapping(
        {"dataset": {"source": dataset}, "sisa": {"shards": shards, "slices": slices}}
    )
    directory.mkdir(parents=True, exist_ok=True)
    params_path.write_text(params.to_yaml(), encoding="utf-8")
    _emit(
        as_json,
        {"workspace": str(directory.resolve()), "params": params.model_dump(mode="json")},
        lambda: typer.echo(f"workspace ready at {directory}: edit {params_path}, then train"),
    )


@app.command()
def train(
    workspace: WorkspaceOption = Path("."),
    progress: Annotated[bool, typer.Option(help="Show a bar per shard.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Shard the dataset and train every shard model from scratch."""
    params, ensemble = _load_workspace(workspace)
    dataset = _load_dataset(params, workspace)
    counts = ensemble.prepare(dataset)
    with _shard_progress(progress and not as_json, ensemble.shard_ids, params.sisa.slices) as bar:
        report = ensemble.train(progress=bar)
    accuracy = ensemble.evaluate()
    data = {
        "records": sum(counts.values()),
        "records_per_shard": counts,
        "shards_trained": report.shard_ids,
        "accuracy": accuracy,
        "seconds": round(report.seconds, 3),
    }
    _emit(
        as_json,
        data,
        lambda: typer.echo(
            f"trained {len(report.models)} shards on {data['records']} records "
            f"in {report.seconds:.1f} s; held-out accuracy {accuracy:.4f}"
        ),
    )


def _load_dataset(params: Params, workspace: Path) -> Any:
    from unlearn_ops.datasets import load_dataset

    spec = params.dataset
    return load_dataset(
        spec.source,
        id_column=spec.id_column,
        label_column=spec.label_column,
        feature_columns=spec.feature_columns,
        base_dir=workspace,
    )


@app.command()
def prepare(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """DVC stage: write the shard and held-out tables (forgotten records left out)."""
    params, ensemble = _load_workspace(workspace)
    counts = ensemble.prepare(_load_dataset(params, workspace))
    _emit(
        as_json,
        {"records_per_shard": counts},
        lambda: typer.echo(f"wrote {len(counts)} shards, {sum(counts.values())} records"),
    )


@app.command("train-shard")
def train_shard_command(
    shard: Annotated[str, typer.Argument(help="Shard id: 3 or shard-003.")],
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """DVC stage: train (or resume) one shard on its current file and serve it."""
    _params, ensemble = _load_workspace(workspace)
    try:
        shard_id = int(shard.removeprefix("shard-"))
    except ValueError:
        _fail(f"not a shard id: {shard!r}; use a number such as 3 or a name such as shard-003")
    if shard_id not in ensemble.shard_ids:
        _fail(f"no shard {shard_id}: shards are 0..{len(ensemble.shard_ids) - 1}")
    model = ensemble.train_shard(shard_id)
    _emit(
        as_json,
        {
            "shard_id": shard_id,
            "resumed_from_stage": model.resumed_from_stage,
            "weights_hash": model.weights_hash,
        },
        lambda: typer.echo(
            f"shard {shard_id}: trained stages {model.stages_trained or 'none (all cached)'}"
        ),
    )


@app.command()
def evaluate(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """DVC stage: held-out accuracy of the served ensemble into metrics.json."""
    _params, ensemble = _load_workspace(workspace)
    metrics = {"accuracy": ensemble.evaluate(), "holdout_records": len(ensemble.read_holdout())}
    (workspace / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _emit(as_json, metrics, lambda: typer.echo(f"held-out accuracy {metrics['accuracy']:.4f}"))


@app.command()
def forget(
    ids: Annotated[str | None, typer.Option(help="Comma-separated record ids.")] = None,
    ids_file: Annotated[
        Path | None,
        typer.Option(help="File of ids: one per line (.txt) or a JSON list (.json)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would retrain; change nothing.")
    ] = False,
    workspace: WorkspaceOption = Path("."),
    progress: Annotated[bool, typer.Option(help="Show a bar per retrained shard.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Forget records: remove them from the data and retrain only the affected shards."""
    record_ids = _parse_ids(ids, ids_file)
    params, ensemble = _load_workspace(workspace)
    if dry_run:
        plan = ensemble.plan_forget(record_ids)
        _emit(as_json, {"dry_run": True, **plan.to_dict()}, lambda: _print_plan(plan))
        return
    before = ensemble.evaluate()
    plan = ensemble.plan_forget(record_ids)
    with _shard_progress(progress and not as_json, plan.shard_ids, params.sisa.slices) as bar:
        report = ensemble.forget(record_ids, progress=bar)
    after = ensemble.evaluate()
    data = {**report.to_dict(), "accuracy_before": before, "accuracy_after": after}

    def lines() -> None:
        if not report.changed:
            typer.echo(f"nothing to do: all {len(record_ids)} ids were forgotten before")
            return
        _print_plan(report.plan)
        typer.echo(
            f"forgot {len(report.forgotten)} records in {report.seconds:.2f} s; "
            f"accuracy {before:.4f} -> {after:.4f}"
        )

    _emit(as_json, data, lines)


def _print_plan(plan: Any) -> None:
    if plan.already_forgotten:
        typer.echo(f"{len(plan.already_forgotten)} ids were forgotten before (no-op for them)")
    if plan.holdout_records:
        typer.echo(f"{plan.holdout_records} ids are held-out records (removed, no retraining)")
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


@app.command()
def verify(
    shards: Annotated[
        str | None, typer.Option(help="Comma-separated shard ids; all shards by default.")
    ] = None,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Exactness certificate: retrain shards from scratch and compare weights bit for bit."""
    from unlearn_ops.verification import certify_exactness

    _params, ensemble = _load_workspace(workspace)
    shard_ids = None
    if shards is not None:
        try:
            shard_ids = [int(s) for s in shards.split(",")]
        except ValueError:
            _fail(f"--shards must be comma-separated integers, got {shards!r}")
        bad = [s for s in shard_ids or [] if s not in ensemble.shard_ids]
        if bad:
            _fail(f"no shard {bad[0]}: shards are 0..{len(ensemble.shard_ids) - 1}")
    certificate = certify_exactness(ensemble, shard_ids)

    def lines() -> None:
        for shard in certificate.shards:
            mark = "exact" if shard.exact else "DIFFERS"
            typer.echo(
                f"shard {shard.shard_id}: {mark} ({shard.num_records} records, "
                f"weights {shard.served_hash[:12] or '-'} vs scratch {shard.scratch_hash[:12]})"
            )
        verdict = "PASSED" if certificate.passed else "FAILED"
        typer.echo(f"exactness certificate {verdict} in {certificate.seconds:.1f} s")

    _emit(as_json, certificate.to_dict(), lines)
    if not certificate.passed:
        raise typer.Exit(1)


@app.command()
def demo(
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Where to build the demo workspace.")
    ] = Path(".demo"),
    records: Annotated[int, typer.Option(min=1, help="How many records to forget.")] = 5,
) -> None:
    """Train on digits, forget a few records, certify: the core end to end."""
    import random

    from unlearn_ops.ensemble import SisaEnsemble
    from unlearn_ops.params import Params
    from unlearn_ops.settings import load_settings
    from unlearn_ops.verification import certify_exactness

    if (workspace / PARAMS_FILE).exists():
        params_path = workspace / PARAMS_FILE
        typer.echo(f"reusing {params_path}")
        from unlearn_ops.params import load_params

        params = load_params(params_path)
    else:
        params = Params()
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / PARAMS_FILE).write_text(params.to_yaml(), encoding="utf-8")
    ensemble = SisaEnsemble(workspace, params, load_settings())
    dataset = _load_dataset(params, workspace)
    typer.echo(
        f"dataset {dataset.source}: {len(dataset)} records, {len(dataset.feature_columns)} "
        f"features; S={params.sisa.shards} shards x R={params.sisa.slices} slices"
    )
    ensemble.prepare(dataset)
    with _shard_progress(True, ensemble.shard_ids, params.sisa.slices) as bar:
        trained = ensemble.train(progress=bar)
    before = ensemble.evaluate()
    typer.echo(
        f"trained {len(trained.models)} shards in {trained.seconds:.1f} s; "
        f"held-out accuracy {before:.4f}"
    )

    pool = [r for s in ensemble.shard_ids for r in ensemble.read_shard(s)["record_id"]]
    chosen = random.Random(params.seed).sample(pool, min(records, len(pool)))  # noqa: S311
    typer.echo(f"forgetting records {', '.join(map(str, chosen))}")
    plan = ensemble.plan_forget(chosen)
    with _shard_progress(True, plan.shard_ids, params.sisa.slices) as bar:
        report = ensemble.forget(chosen, progress=bar)
    _print_plan(report.plan)
    after = ensemble.evaluate()
    typer.echo(
        f"forgot {len(report.forgotten)} records in {report.seconds:.2f} s "
        f"(full training took {trained.seconds:.2f} s); accuracy {before:.4f} -> {after:.4f}"
    )
    certificate = certify_exactness(ensemble, report.training.shard_ids)
    typer.echo(
        "exactness certificate for the retrained shards: "
        + ("PASSED" if certificate.passed else "FAILED")
        + f" (shards {', '.join(str(s.shard_id) for s in certificate.shards)})"
    )
    if not certificate.passed:
        raise typer.Exit(1)


@app.command()
def bench(
    output: Annotated[Path, typer.Option(help="Folder for results.json and results.md.")] = Path(
        "bench-results"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny settings, to check the harness runs.")
    ] = False,
    repeats: Annotated[int, typer.Option(min=1, help="Random draws per forget size.")] = 3,
    only: Annotated[
        str | None, typer.Option(help="Comma-separated workload names to run (default all).")
    ] = None,
    sweep: Annotated[bool, typer.Option(help="Also sweep S on MNIST-5k (accuracy vs S).")] = True,
) -> None:
    """Benchmark: full training vs monolithic vs forgetting 1 and 10 records."""
    from unlearn_ops.benchmark import run_benchmark

    names = None if only is None else [n.strip() for n in only.split(",")]
    table = run_benchmark(output, quick=quick, repeats=repeats, only=names, sweep=sweep)
    typer.echo(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning library errors into one line and exit code 2."""
    try:
        result = app(args=argv, standalone_mode=False)
    except UnlearnOpsError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in standalone_mode=False
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(result, int) and result:
        sys.exit(result)


if __name__ == "__main__":
    main()

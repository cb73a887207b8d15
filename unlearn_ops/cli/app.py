"""The `unlearn-ops` command line: thin over the library and the flows, one clear line per error.

Heavy libraries (torch, pandas, mlflow, prefect) load inside the commands, so
`unlearn-ops --help` is fast. Every command works from inside a workspace (or below it)
or with `--workspace DIR`, and takes `--json`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from unlearn_ops.errors import InvalidRequestError, UnlearnOpsError

if TYPE_CHECKING:
    from unlearn_ops.serving.versions import VersionInfo
    from unlearn_ops.sisa.training import StageProgress
    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["app", "main"]

app = typer.Typer(
    name="unlearn-ops",
    help="Make trained models forget records exactly (SISA), with provenance in MLflow and DVC.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace directory; by default the one containing the current directory.",
        envvar="UNLEARN_OPS_WORKSPACE",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
ProgressOption = Annotated[bool, typer.Option(help="Show a bar per shard while training.")]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _emit(as_json: bool, data: dict[str, Any], lines: Callable[[], None]) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        lines()


def _open(workspace: Path) -> Workspace:
    from unlearn_ops.workflow.workspace import Workspace, find_workspace

    return Workspace.open(find_workspace(workspace))


def _prefect_defaults() -> None:
    """Quiet, patient defaults for Prefect's ephemeral server (STACK.md); env wins."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class _ExpectedErrorFilter(logging.Filter):
    """Drops Prefect's console records of an `UnlearnOpsError`: the CLI prints it in one line.

    The flow and task runs still end Failed, with the error, in Prefect's API and UI.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UnlearnOpsError):
            return False
        message = record.getMessage()
        return not any(f"{name}(" in message or f"{name}:" in message for name in _error_names())


def _error_names() -> set[str]:
    names, pending = set(), [UnlearnOpsError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


def _run_flow(flow: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a flow with the settings' parallelism; expected errors are left to `main`."""
    from prefect.logging.handlers import PrefectConsoleHandler

    from pipelines.runner import run_flow

    handlers = {
        handler
        for logger in (logging.getLogger(), logging.getLogger("prefect"))
        for handler in logger.handlers
        if isinstance(handler, PrefectConsoleHandler)
    }
    quiet = _ExpectedErrorFilter()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        return run_flow(flow, *args, **kwargs)
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


@contextmanager
def _shard_progress(enabled: bool, shard_ids: list[int], stages: int) -> Iterator[StageProgress]:
    """A progress bar per shard on stderr (stages done of R); nothing when not a terminal."""
    if not enabled or not shard_ids or not sys.stderr.isatty():
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
        str, typer.Option(help="Built-in dataset (digits, mnist-5k) or a CSV/parquet path.")
    ] = "digits",
    id_column: Annotated[str, typer.Option(help="Record id column of a file.")] = "record_id",
    label_column: Annotated[str, typer.Option(help="Label column of a file.")] = "label",
    shards: Annotated[int, typer.Option(min=1, max=1024, help="S: number of shards.")] = 8,
    slices: Annotated[int, typer.Option(min=1, max=256, help="R: slices per shard.")] = 4,
    model_name: Annotated[
        str | None, typer.Option(help="Registered model name; the directory name by default.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a workspace: git + DVC repository, params.yaml and the dvc.yaml pipeline."""
    from unlearn_ops.adapters.dvc.lineage import init_repository
    from unlearn_ops.params import Params
    from unlearn_ops.serving import gates
    from unlearn_ops.workflow.workspace import write_workspace_files

    directory = directory.resolve()
    name = model_name or "".join(c if c.isalnum() or c in "-_." else "-" for c in directory.name)
    params = Params.from_mapping(
        {
            "dataset": {"source": dataset, "id_column": id_column, "label_column": label_column},
            "sisa": {"shards": shards, "slices": slices},
            "registry": {"model_name": name.strip("-.") or "unlearn-ops-model"},
        },
        source="init options",
    )
    write_workspace_files(directory, params)
    sha = init_repository(directory)
    if warning := gates.workspace_holdout_warning(params):  # issue 11, finding 4
        typer.echo(f"warning: {warning}", err=True)
    _emit(
        as_json,
        {"workspace": str(directory), "git_sha": sha, "model_name": params.registry.model_name},
        lambda: typer.echo(
            f"workspace ready at {directory} (git {sha[:12]}, DVC initialised); "
            f"next: unlearn-ops train -w {directory}"
        ),
    )


@app.command()
def train(
    workspace: WorkspaceOption = Path("."),
    progress: ProgressOption = True,
    as_json: JsonOption = False,
) -> None:
    """Train every shard from scratch through the `train-ensemble` flow; register version 1."""
    from pipelines.train import train_ensemble
    from unlearn_ops.sisa.progress import reporting

    ws = _open(workspace)
    with (
        _shard_progress(
            progress and not as_json, ws.ensemble.shard_ids, ws.params.sisa.slices
        ) as bar,
        reporting(bar),
    ):
        result = _run_flow(train_ensemble, str(ws.root))
    _emit(
        as_json,
        result,
        lambda: typer.echo(
            f"version {result['version']} is champion: {result['records']} records, "
            f"held-out accuracy {result['accuracy']:.4f}, data at git {result['git_sha'][:12]}"
        ),
    )


@app.command()
def prepare(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """DVC stage: write the shard and held-out tables (forgotten records left out)."""
    from unlearn_ops.workflow.preparation import prepare_data

    counts = prepare_data(_open(workspace))
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
    ws = _open(workspace)
    try:
        shard_id = int(shard.removeprefix("shard-"))
    except ValueError:
        _fail(f"not a shard id: {shard!r}; use a number such as 3 or a name such as shard-003")
    if shard_id not in ws.ensemble.shard_ids:
        _fail(f"no shard {shard_id}: shards are 0..{len(ws.ensemble.shard_ids) - 1}")
    model = ws.ensemble.train_shard(shard_id)
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
    from unlearn_ops.workflow.retraining import evaluate as evaluate_step

    metrics = evaluate_step(_open(workspace))
    _emit(as_json, metrics, lambda: typer.echo(f"held-out accuracy {metrics['accuracy']:.4f}"))


@app.command()
def register(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """DVC stage: gate the current state and register it as a version (champion if it passes)."""
    from unlearn_ops.serving.promotion import champion_accuracy, promote
    from unlearn_ops.workflow.registration import register_version
    from unlearn_ops.workflow.retraining import evaluate as evaluate_step
    from unlearn_ops.workflow.retraining import run_gates

    ws = _open(workspace)
    metrics = ws.read_json(ws.metrics_path) or evaluate_step(ws)
    gates = run_gates(ws, metrics, champion_accuracy(ws))
    version = register_version(
        ws,
        kind="repro",
        requests=[],
        trained=[],
        revision=ws.lineage().current_revision(ws.ensemble.shard_ids),
        gates=gates,
        metrics=metrics,
        timings={},
    )
    promote(ws, version, gates)
    _emit(
        as_json,
        version.to_dict(),
        lambda: typer.echo(f"registered version {version.version} and made it champion"),
    )


@app.command()
def forget(
    ids: Annotated[str | None, typer.Option(help="Comma-separated record ids.")] = None,
    ids_file: Annotated[
        Path | None,
        typer.Option(help="File of ids: one per line (.txt) or a JSON list (.json)."),
    ] = None,
    request_id: Annotated[
        str | None, typer.Option(help="Idempotency key of the request; generated if absent.")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the ledger).")] = "erasure request",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would retrain; change nothing.")
    ] = False,
    workspace: WorkspaceOption = Path("."),
    progress: ProgressOption = True,
    as_json: JsonOption = False,
) -> None:
    """Forget records through the `forget-records` flow: a new version that honours them."""
    from unlearn_ops.deletion.requests import ForgetRequest

    request = ForgetRequest.build(_parse_ids(ids, ids_file), request_id, reason)
    ws = _open(workspace)
    plan = ws.ensemble.plan_forget(list(request.record_ids))
    # A rerun after a crash: its ids are forgotten already, yet shards still retrain (#11.7).
    resumed = ws.ledger.interrupted([request.request_id], ws.ensemble.forgotten_hashes())
    stale = sorted({*ws.ensemble.stale_shards(), *plan.shard_ids}) if resumed else plan.shard_ids
    extra = {"resumed": {"still_to_retrain": stale}} if resumed else {}
    if dry_run:
        _emit(
            as_json,
            {"dry_run": True, "request_id": request.request_id, **plan.to_dict(), **extra},
            lambda: (
                typer.echo(_resume_line(resumed[request.request_id], stale))
                if resumed
                else _print_plan(plan)
            ),
        )
        return
    from pipelines.forget import forget_records
    from unlearn_ops.sisa.progress import reporting

    if resumed and not as_json:
        typer.echo(_resume_line(resumed[request.request_id], stale))
    bars = progress and not as_json
    with _shard_progress(bars, stale, ws.params.sisa.slices) as bar, reporting(bar):
        result = _run_flow(forget_records, str(ws.root), [request.model_dump(mode="json")])

    def lines() -> None:
        if result.get("noop"):
            typer.echo(f"nothing to do: {result['message']}")
            return
        if not resumed:
            _print_plan(plan)
        typer.echo(
            f"request {request.request_id}: version {result['version']} is champion "
            f"(held-out accuracy {result['accuracy']:.4f}, data at git {result['git_sha'][:12]})"
        )

    _emit(as_json, {"request_id": request.request_id, **result, **extra}, lines)


def _resume_line(state: Any, stale: list[int]) -> str:
    done = sorted(set(state.planned_shards) - set(stale))
    return (
        f"resuming interrupted request {state.request_id} (received {state.received_at[:19]}; "
        "a run removed its records and stopped before serving a version): "
        + (f"shard(s) {', '.join(map(str, done))} retrained then; " if done else "")
        + f"still to retrain: {', '.join(f'shard {s}' for s in stale) or 'nothing'}"
    )


def _version_row(info: VersionInfo) -> dict[str, Any]:
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


@app.command()
def versions(workspace: WorkspaceOption = Path("."), as_json: JsonOption = False) -> None:
    """The registered versions: aliases, requests honoured, gates."""

    ws = _open(workspace)
    found = ws.registry().versions()
    rows = [_version_row(v) for v in found]

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

    _emit(as_json, {"model_name": ws.model_name, "versions": rows}, lines)


@app.command()
def show(
    version: Annotated[str, typer.Argument(help="Version number or alias (champion).")],
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """One version: its description and provenance tags."""

    info = _open(workspace).registry().get_version(version)

    def lines() -> None:
        aliases = f" ({', '.join(info.aliases)})" if info.aliases else ""
        typer.echo(f"version {info.version}{aliases}")
        typer.echo(info.description)
        for key, value in sorted(info.tags.items()):
            typer.echo(f"  {key} = {value}")

    _emit(as_json, info.to_dict(), lines)


@app.command()
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

    ws = _open(workspace)
    shard_ids = None
    if shards is not None:
        try:
            shard_ids = [int(s) for s in shards.split(",")]
        except ValueError:
            _fail(f"--shards must be comma-separated integers, got {shards!r}")
        bad = [s for s in shard_ids or [] if s not in ws.ensemble.shard_ids]
        if bad:
            _fail(f"no shard {bad[0]}: shards are 0..{len(ws.ensemble.shard_ids) - 1}")
    if version is None:
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

    _emit(as_json, certificate.to_dict(), lines)
    if not certificate.passed:
        raise typer.Exit(1)


@app.command()
def demo(
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Where to build the demo workspace.")
    ] = Path(".demo"),
    records: Annotated[int, typer.Option(min=1, max=100, help="Records to forget.")] = 5,
    shards: Annotated[int, typer.Option(min=1, help="S of a new demo workspace.")] = 8,
    slices: Annotated[int, typer.Option(min=1, help="R of a new demo workspace.")] = 4,
) -> None:
    """The main job on the embedded default: init on digits, train, forget, show provenance."""
    import random
    import shutil

    if workspace.exists() and any(workspace.iterdir()):
        params_path = workspace / "params.yaml"
        if not params_path.is_file() or "model_name: digits-demo" not in params_path.read_text(
            encoding="utf-8"
        ):
            _fail(f"{workspace} exists and is not a demo workspace; choose another --workspace")
        shutil.rmtree(workspace)  # a previous demo: start afresh
    typer.echo(f"$ unlearn-ops init {workspace} --dataset digits")
    init(workspace, shards=shards, slices=slices, model_name="digits-demo")
    typer.echo("$ unlearn-ops train")
    train(workspace, progress=True, as_json=False)
    ws = _open(workspace)
    pool = [str(r) for s in ws.ensemble.shard_ids for r in ws.ensemble.read_shard(s)["record_id"]]
    chosen = random.Random(ws.params.seed).sample(pool, min(records, len(pool)))  # noqa: S311
    typer.echo(f"$ unlearn-ops forget --ids {','.join(chosen)} --request-id demo-request-1")
    forget(
        ids=",".join(chosen),
        ids_file=None,
        request_id="demo-request-1",
        reason="demo: GDPR art. 17",
        dry_run=False,
        workspace=workspace,
        progress=True,
        as_json=False,
    )
    typer.echo("$ unlearn-ops versions")
    versions(workspace, as_json=False)
    typer.echo("$ unlearn-ops show champion")
    show("champion", workspace, as_json=False)
    typer.echo("$ unlearn-ops verify --shards (the retrained ones)")

    retrained = json.loads(ws.registry().get_version("champion").tag("shards_retrained"))
    verify(None, ",".join(map(str, retrained)) or None, workspace, as_json=False)
    typer.echo(
        "\nOpen the lineage in the MLflow UI (it prints the champion's page; Ctrl-C stops it):\n"
        f"  unlearn-ops ui --workspace {workspace} --port 5050\n"
        f"(and `git -C {workspace} log --oneline`, `dvc diff` there, for the data lineage)"
    )


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
def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port of the UI.")] = 5050,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Start the MLflow UI on the workspace's store and print the champion's page (Ctrl-C stops)."""
    from unlearn_ops.adapters.mlflow.ui import MlflowUiServer, page_url
    from unlearn_ops.serving.versions import CHAMPION

    ws = _open(workspace)
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
        _fail(f"the MLflow UI server exited on its own with code {code}")


@app.command()
def audit(
    request_id: Annotated[
        str | None,
        typer.Argument(metavar="REQUEST_ID", help="The request to audit (its id in the ledger)."),
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
        _fail("give a REQUEST_ID to audit, or --check-chain to verify the ledger")
    ws = _open(workspace)
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
    _emit(as_json, document, lambda: typer.echo("\n".join(lines)))
    if failed:
        raise typer.Exit(1)


@app.command()
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
        Path | None,
        typer.Option(
            "--output", "-o", help="File to write; compliance-report.html (or .md) by default."
        ),
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
        _fail(f"--format must be html or markdown, got {report_format!r}")
    markdown = report_format == "markdown" or (
        report_format is None and output is not None and output.suffix in (".md", ".markdown")
    )
    bounds = {}
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            try:
                bounds[name] = parse_period_bound(value, end=name == "until")
            except ValueError as exc:
                _fail(f"--{name}: {exc}")
    ws = _open(workspace)
    compliance = build_report(ws, since=bounds.get("since"), until=bounds.get("until"))
    target = output or Path("compliance-report.md" if markdown else "compliance-report.html")
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

    _emit(as_json, {"files": [str(p) for p in written], **compliance.to_dict()}, lines)


@app.command()
def rollback(
    to: Annotated[
        str | None,
        typer.Option(help="Version or alias to go back to; the `previous` alias by default."),
    ] = None,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="If the target misses deletions, rebuild it with them as a new version.",
        ),
    ] = False,
    workspace: WorkspaceOption = Path("."),
    progress: ProgressOption = True,
    as_json: JsonOption = False,
) -> None:
    """Point `champion` back at a version that honours every deletion (or a replay of one)."""
    from pipelines.rollback import rollback_model
    from unlearn_ops.sisa.progress import reporting

    ws = _open(workspace)
    bars = progress and not as_json and replay
    with _shard_progress(bars, ws.ensemble.shard_ids, ws.params.sisa.slices) as bar, reporting(bar):
        result = _run_flow(rollback_model, str(ws.root), to, replay)

    def lines() -> None:
        if result["noop"]:
            typer.echo(result["message"])
        elif result["action"] == "move":
            typer.echo(
                f"version {result['version']} is champion again (version {result['champion']} "
                f"is previous; data at git {result['git_sha'][:12]})"
            )
        else:
            replayed = ", ".join(result["missing"]) or "none"
            shards = ", ".join(str(r["shard_id"]) for r in result["retrained"]) or "none"
            typer.echo(
                f"version {result['version']} is champion: version {result['target']} rebuilt "
                f"with deletions {replayed} (shards retrained: {shards}; held-out accuracy "
                f"{result['accuracy']:.4f}; version {result['champion']} is previous)"
            )

    _emit(as_json, result, lines)


@app.command()
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

    ws = _open(workspace)
    if scan:
        from unlearn_ops.compliance.scan import scan_workspace

        report = scan_workspace(ws)

        def scan_lines() -> None:
            for finding in report.findings:
                typer.echo(f"{finding.store}: {finding.path}: {finding.reason}")
            for item in report.unverified:
                typer.echo(f"{item['store']}: {item['path']}: not judged ({item['reason']})")
            scanned = sum(report.files_scanned.values())
            verdict = "clean" if report.clean else f"{len(report.findings)} hold forgotten records"
            typer.echo(f"scanned {scanned} files: {verdict}")

        _emit(as_json, report.to_dict(), scan_lines)
        if not report.clean:
            raise typer.Exit(1)
        return
    moment = purging.parse_now(now)
    if dry_run:
        plan = purging.purge_workspace(ws, moment, dry_run=True)
        result = {"dry_run": True, **plan.to_dict()}
    else:
        from pipelines.purge import purge_superseded

        result = _run_flow(purge_superseded, str(ws.root), moment.isoformat(), False)

    def lines() -> None:
        verb = "would delete" if dry_run else "deleted"
        for fate in result["versions"]:
            if fate["action"] != "keep":
                when = "now" if fate["action"] == "delete" else f"at {fate['due_at']}"
                typer.echo(
                    f"version {fate['version']}: {fate['action']} ({when}): {fate['reason']}"
                )
        for fate in result["requests"]:
            typer.echo(f"request {fate['request_id']}: {fate['status']} (due {fate['due_at']})")
        gone = result.get("executed") or result["delete"]
        typer.echo(
            f"{verb}: versions {', '.join(gone['versions']) or 'none'}, "
            f"{gone['checkpoints']} checkpoint(s), {gone['cache_objects']} DVC cache object(s)"
            + (f", next due {result['next_due']}" if result["next_due"] else "")
        )

    _emit(as_json, result, lines)


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
    sweep: Annotated[
        bool, typer.Option(help="Also sweep S on MNIST-5k, MLP and CNN (accuracy vs S).")
    ] = True,
    flows: Annotated[bool, typer.Option(help="Also time the flows end to end.")] = True,
) -> None:
    """Benchmark: full training vs monolithic vs forgetting 1 and 10 records."""
    from unlearn_ops.bench.core import run_benchmark

    names = None if only is None else [n.strip() for n in only.split(",")]
    table = run_benchmark(
        output, quick=quick, repeats=repeats, only=names, sweep=sweep, flows=flows
    )
    typer.echo(table)


# ------------------------------------------------------------------- deletion events
def _read_json_file(path: Path) -> dict[str, Any]:
    from unlearn_ops.deletion.envelope import parse_json_object

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path} ({exc.strerror})") from exc
    return parse_json_object(data)


@app.command()
def sign(
    request_file: Annotated[
        Path,
        typer.Argument(help="A request as JSON: request_id, record_ids or subject_id, reason."),
    ],
) -> None:
    """Sign a request with UNLEARN_OPS_REQUEST_SIGNING_KEY: print the envelope to send."""
    from unlearn_ops.deletion.envelope import sign_request, verify_request
    from unlearn_ops.settings import load_settings

    settings = load_settings()
    if settings.request_signing_key is None:
        _fail("UNLEARN_OPS_REQUEST_SIGNING_KEY is not set: there is no key to sign with")
    request = _read_json_file(request_file)
    request.setdefault("requested_at", datetime.now(UTC).isoformat())
    envelope = sign_request(request, settings.request_signing_key.get_secret_value())
    verify_request(envelope, settings)  # refuse to sign what the intake would refuse
    typer.echo(json.dumps(envelope, indent=2))


@app.command()
def submit(
    envelope_file: Annotated[Path, typer.Argument(help="A signed request (`unlearn-ops sign`).")],
    via: Annotated[
        str, typer.Option(help="`s3` (drop it in the intake bucket) or `event` (Prefect).")
    ] = "s3",
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Send a signed request as a privacy system would: an S3 file or a Prefect event.

    The envelope is checked first, as the intake will check it (its signature too, when
    UNLEARN_OPS_REQUEST_SIGNING_KEY is set here): a request it would refuse is not sent.
    """
    from unlearn_ops.deletion.envelope import parse_envelope, verify_request
    from unlearn_ops.settings import load_settings

    if via not in ("s3", "event"):
        _fail(f"--via must be s3 or event, got {via!r}")
    envelope = _read_json_file(envelope_file)
    settings = load_settings()
    if settings.request_signing_key is None:
        parse_envelope(envelope)
    else:
        verify_request(envelope, settings)
    if via == "s3":
        from unlearn_ops.adapters.aws.s3_intake import S3Intake

        key = S3Intake.from_settings(settings).submit(envelope)
        typer.echo(f"dropped s3://{settings.intake_bucket}/{key}")
    elif via == "event":
        from prefect.events.worker import EventsWorker

        from pipelines.intake import emit_deletion_request

        event_id = emit_deletion_request(_open(workspace), envelope)
        EventsWorker.drain_all(timeout=30)  # sent before this process ends
        typer.echo(f"emitted unlearn.deletion.requested {event_id}")


@app.command()
def inbox(
    retry: Annotated[
        str | None, typer.Option(help="Put this failed request back to pending.")
    ] = None,
    workspace: WorkspaceOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """The inbox: requests received and their state, and the deliveries refused."""
    ws = _open(workspace)
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
                f"  {entry.request_id:<32} {entry.state:<10} {len(entry.record_hashes):>5} records"
                f"  {entry.source}  {detail}"
            )
        for rejection in rejections[-20:]:
            typer.echo(f"  refused {rejection.at} {rejection.source}: {rejection.kind}")

    _emit(as_json, data, lines)


@app.command()
def listen(
    once: Annotated[
        bool, typer.Option("--once", help="Stop when the queue is empty and all is drained.")
    ] = False,
    http: Annotated[
        str | None,
        typer.Option(
            help="Also accept requests over HTTP on HOST:PORT (POST /v1/deletion-requests)."
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
    from unlearn_ops.deletion.listener import listen as run_listener

    ws = _open(workspace)
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
            _fail(f"--http must be HOST:PORT with a port from 0 to 65535, got {http!r}")
        server = HttpIntake(
            ws.inbox, ws.settings, host=host, port=int(port), on_accepted=lambda _: arrived.set()
        )
        server.start()
        typer.echo(f"HTTP intake on {server.url}", err=True)
    if s3 is None and server is None:
        _fail(
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
        for request_id, reason in answer.get("failed", {}).items():
            typer.echo(f"request {request_id} failed: {reason}", err=True)

    try:
        report = run_listener(
            ws,
            s3=s3,
            http=server,
            arrived=arrived,
            drain=lambda: _run_flow(drain_inbox, str(ws.root)),
            once=once,
            wait_seconds=wait_seconds,
            visibility_timeout=visibility_timeout,
            on_drained=drained,
        )
    finally:
        if server is not None:
            server.stop()
    _emit(
        as_json,
        report.to_dict(),
        lambda: typer.echo(
            f"accepted {report.received.accepted}, duplicates {report.received.duplicates}, "
            f"refused {report.received.refused}; {report.drains} drain(s), "
            f"{report.batches} retraining run(s)"
        ),
    )


@app.command()
def serve(
    sweep_seconds: Annotated[
        float, typer.Option(help="Also drain on this interval (finishes interrupted work).")
    ] = 600.0,
    workspace: WorkspaceOption = Path("."),
) -> None:
    """Serve the forget flow as a Prefect deployment triggered by `unlearn.deletion.requested`."""
    if not os.environ.get("PREFECT_API_URL"):
        _fail(
            "PREFECT_API_URL is not set: a deployment needs a Prefect server that outlives "
            "this process (start one with infra/launcher.py or `prefect server start`)"
        )
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
    from prefect import serve as prefect_serve

    from pipelines.intake import deployment_for, resource_id

    ws = _open(workspace)
    deployment = deployment_for(ws, sweep_seconds=sweep_seconds or None)
    typer.echo(
        f"serving {deployment.name}: events unlearn.deletion.requested on {resource_id(ws)}",
        err=True,
    )
    # One run at a time: runs that events queue meanwhile are coalesced into it.
    prefect_serve(deployment, limit=1, print_starting_message=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning library errors into one line and exit code 2."""
    _prefect_defaults()  # before anything imports Prefect, which reads them once
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

"""Commands of a workspace's life: init, train, forget, rollback, and the demo of all of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from unlearn_ops.cli.flow_runs import run_flow, use_workspace_server
from unlearn_ops.cli.options import JsonOption, ProgressOption, WorkspaceOption
from unlearn_ops.cli.output import emit, fail, open_workspace, print_plan, shard_progress
from unlearn_ops.errors import InvalidRequestError
from unlearn_ops.timestamps import format_datetime

if TYPE_CHECKING:
    from unlearn_ops.deletion.ledger import RequestState
    from unlearn_ops.params import Params
    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["demo", "forget", "init", "parse_ids", "rollback", "train"]


def _check_dataset(source: str, id_column: str, label_column: str, params: Params) -> int:
    """Refuse, before anything is created, a dataset file that `train` could not use.

    Read chunk by chunk, so a million-record file is never held whole (issue 15).

    Returns:
        How many records the holdout split keeps (for the warning of a small one).
    """
    from unlearn_ops.sisa.dataset_chunks import load_dataset_chunks
    from unlearn_ops.sisa.datasets import split_holdout

    salt, fraction = f"{params.sisa.salt}:{params.seed}", params.dataset.holdout_fraction
    chunks = load_dataset_chunks(source, id_column=id_column, label_column=label_column)
    return sum(len(split_holdout(chunk, fraction, salt)[1]) for chunk in chunks)


def init(
    directory: Annotated[
        Path, typer.Argument(help="Directory to create or fill.", resolve_path=True)
    ],
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
    training: Annotated[
        str,
        typer.Option(
            help="sisa, or monolithic: one model (S = R = 1) that forgets approximately "
            "first, then exactly (README: monolithic workspaces)."
        ),
    ] = "sisa",
    as_json: JsonOption = False,
) -> None:
    """Create a workspace: git + DVC repository, params.yaml and the dvc.yaml pipeline."""
    from unlearn_ops.adapters.dvc.lineage import init_repository
    from unlearn_ops.params import Params
    from unlearn_ops.serving.gates import holdout_size_warning, workspace_holdout_warning
    from unlearn_ops.sisa.datasets import BUILTIN_DATASETS
    from unlearn_ops.workflow.workspace import dataset_source_for, write_workspace_files

    directory = directory.resolve()
    name = model_name or "".join(c if c.isalnum() or c in "-_." else "-" for c in directory.name)
    source = dataset_source_for(directory, dataset, BUILTIN_DATASETS)
    params = Params.from_mapping(
        {
            "dataset": {"source": source, "id_column": id_column, "label_column": label_column},
            "sisa": {"shards": shards, "slices": slices}
            if training != "monolithic"
            else {"shards": 1, "slices": 1},
            "training": {"mode": training},
            "registry": {"model_name": name.strip("-.") or "unlearn-ops-model"},
        },
        source="init options",
    )
    if source in BUILTIN_DATASETS:
        warning = workspace_holdout_warning(params, dataset=BUILTIN_DATASETS[source]())
    else:
        held_out = _check_dataset(str(directory / source), id_column, label_column, params)
        warning = holdout_size_warning(held_out, params.gates)
    write_workspace_files(directory, params)
    sha = init_repository(directory)
    if warning:  # issue 11, finding 4
        typer.echo(f"warning: {warning}", err=True)
    emit(
        as_json,
        {"workspace": str(directory), "git_sha": sha, "model_name": params.registry.model_name},
        lambda: typer.echo(
            f"workspace ready at {directory} (git {sha[:12]}, DVC initialised); "
            f"next: unlearn-ops train -w {directory}"
        ),
    )


def _open_for_flows(workspace: Path) -> Workspace:
    """The workspace, with Prefect pointed at its server before a flow imports Prefect."""
    ws = open_workspace(workspace)
    use_workspace_server(ws.root)
    return ws


def train(
    workspace: WorkspaceOption = Path("."),
    progress: ProgressOption = True,
    as_json: JsonOption = False,
) -> None:
    """Train every shard from scratch through the `train-ensemble` flow; register version 1."""
    ws = _open_for_flows(workspace)
    from pipelines.train import train_ensemble

    with shard_progress(progress and not as_json, ws.ensemble.shard_ids, ws.params.sisa.slices):
        result = run_flow(train_ensemble, str(ws.root))
    emit(
        as_json,
        result,
        lambda: typer.echo(
            f"version {result['version']} is champion: {result['records']} records, "
            f"held-out accuracy {result['accuracy']:.4f}, data at git {result['git_sha'][:12]}"
        ),
    )


def parse_ids(ids: str | None, ids_file: Path | None) -> list[str]:
    """The record ids of `--ids a,b,c` or of `--ids-file` (one per line, or a JSON list).

    Raises:
        InvalidRequestError: neither or both given, an unreadable or malformed file, no ids.
    """
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


def forget(
    ids: Annotated[str | None, typer.Option(help="Comma-separated record ids.")] = None,
    ids_file: Annotated[
        Path | None,
        typer.Option(
            help="File of ids: one per line (.txt) or a JSON list (.json).", resolve_path=True
        ),
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

    request = ForgetRequest.build(parse_ids(ids, ids_file), request_id, reason)
    ws = open_workspace(workspace)
    plan = ws.ensemble.plan_forget(list(request.record_ids))
    # A rerun after a crash: its ids are forgotten already, yet shards still retrain (#11.7).
    resumed = ws.ledger.interrupted([request.request_id], ws.ensemble.forgotten_hashes())
    stale = sorted({*ws.ensemble.stale_shards(), *plan.shard_ids}) if resumed else plan.shard_ids
    extra = {"resumed": {"still_to_retrain": stale}} if resumed else {}
    if dry_run:
        emit(
            as_json,
            {"dry_run": True, "request_id": request.request_id, **plan.to_dict(), **extra},
            lambda: (
                typer.echo(_resume_line(resumed[request.request_id], stale))
                if resumed
                else print_plan(plan)
            ),
        )
        return
    use_workspace_server(ws.root)
    from pipelines.forget import forget_records

    if resumed and not as_json:
        typer.echo(_resume_line(resumed[request.request_id], stale))
    bars = progress and not as_json
    with shard_progress(bars, stale, ws.params.sisa.slices):
        result = run_flow(forget_records, str(ws.root), [request.model_dump(mode="json")])

    def lines() -> None:
        if result.get("noop"):
            typer.echo(f"nothing to do: {result['message']}")
            return
        if result.get("provisional"):  # a monolithic workspace (issue 14)
            typer.echo(
                f"request {request.request_id}: PROVISIONAL version {result['version']} is "
                f"champion, forgotten approximately by {result['method']} (audit: "
                f"{result['audit'] or 'not run'}; held-out accuracy {result['accuracy']:.4f}); "
                f"exact retrain due {format_datetime(result['exact_retrain_due'])}: "
                "`unlearn-ops retrain-exact`"
            )
            return
        if not resumed:
            print_plan(plan)
        typer.echo(
            f"request {request.request_id}: version {result['version']} is champion "
            f"(held-out accuracy {result['accuracy']:.4f}, data at git {result['git_sha'][:12]})"
        )

    emit(as_json, {"request_id": request.request_id, **result, **extra}, lines)


def _resume_line(state: RequestState, stale: list[int]) -> str:
    """What a rerun of an interrupted request says before it retrains (issue 11, finding 7)."""
    done = sorted(set(state.planned_shards) - set(stale))
    return (
        f"resuming interrupted request {state.request_id} (received {state.received_at[:19]}; "
        "a run removed its records and stopped before serving a version): "
        + (f"shard(s) {', '.join(map(str, done))} retrained then; " if done else "")
        + f"still to retrain: {', '.join(f'shard {s}' for s in stale) or 'nothing'}"
    )


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
    ws = _open_for_flows(workspace)
    from pipelines.rollback import rollback_model

    bars = progress and not as_json and replay
    # A federation has no shards to show (and is never replayed).
    shards = ws.ensemble.shard_ids if bars and not ws.is_federation else []
    with shard_progress(bool(shards), shards, ws.params.sisa.slices):
        result = run_flow(rollback_model, str(ws.root), to, replay)

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

    emit(as_json, result, lines)


def demo(
    workspace: Annotated[
        Path,
        typer.Option(
            "--workspace", "-w", help="Where to build the demo workspace.", resolve_path=True
        ),
    ] = Path(".demo"),
    records: Annotated[int, typer.Option(min=1, max=100, help="Records to forget.")] = 5,
    shards: Annotated[int, typer.Option(min=1, help="S of a new demo workspace.")] = 8,
    slices: Annotated[int, typer.Option(min=1, help="R of a new demo workspace.")] = 4,
) -> None:
    """The main job on the embedded default: init on digits, train, forget, show provenance."""
    import random
    import shutil

    from unlearn_ops.cli.versions import show, verify, versions

    if workspace.exists() and any(workspace.iterdir()):
        params_path = workspace / "params.yaml"
        if not params_path.is_file() or "model_name: digits-demo" not in params_path.read_text(
            encoding="utf-8"
        ):
            fail(f"{workspace} exists and is not a demo workspace; choose another --workspace")
        shutil.rmtree(workspace)  # a previous demo: start afresh
    typer.echo(f"$ unlearn-ops init {workspace} --dataset digits")
    init(workspace, shards=shards, slices=slices, model_name="digits-demo")
    typer.echo("$ unlearn-ops train")
    train(workspace, progress=True, as_json=False)
    ws = open_workspace(workspace)
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

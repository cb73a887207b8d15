"""`unlearn-ops bench`: the benchmark, with the flows handed to the harness from here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from unlearn_ops.cli.options import command_group

if TYPE_CHECKING:
    from unlearn_ops.bench.flows import BenchFlows
    from unlearn_ops.settings import Settings

__all__ = ["bench", "bench_flows", "data_app"]


def bench_flows() -> BenchFlows:
    """The `train-ensemble` and `forget-records` flows, as the flow benchmark times them.

    Run on the thread pool that the settings size, like every flow of the CLI, but without
    its console filter: the benchmark reports every failure in full.
    """
    from pipelines.forget import forget_records
    from pipelines.runner import run_flow
    from pipelines.train import train_ensemble
    from unlearn_ops.bench.flows import BenchFlows

    def train(root: str, settings: Settings) -> dict[str, Any]:
        result: dict[str, Any] = run_flow(train_ensemble, root, settings=settings)
        return result

    def forget(root: str, requests: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
        result: dict[str, Any] = run_flow(forget_records, root, requests, settings=settings)
        return result

    return BenchFlows(train=train, forget=forget)


def bench(
    output: Annotated[
        Path,
        typer.Option(help="Folder for results.json and results.md.", resolve_path=True),
    ] = Path("bench-results"),
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
        output,
        quick=quick,
        repeats=repeats,
        only=names,
        sweep=sweep,
        flows=bench_flows() if flows else None,
    )
    typer.echo(table)


data_app = command_group("Write generated datasets for benchmarks (never committed).")


@data_app.command("million")
def million(
    rows: Annotated[int, typer.Option(min=1, help="How many records.")] = 1_000_000,
    path: Annotated[
        Path, typer.Option(help="The parquet file to write.", resolve_path=True)
    ] = Path("million.parquet"),
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 0,
) -> None:
    """ROWS x 32 of scikit-learn's make_classification, with a record_id, to parquet in chunks."""
    from unlearn_ops.bench.million import write_million

    write_million(path, rows, seed=seed)
    typer.echo(f"{path}: {rows:,} records x 32 features")

"""End-to-end benchmark of the flows: a one-record forget, request to promoted version.

For a workload of the core benchmark it builds a real workspace (git + DVC, embedded
MLflow, Prefect's ephemeral server) and measures, in one process:

- the `train-ensemble` flow (the first flow of the process: it also starts Prefect),
- one-record `forget-records` flows in this warm process (several random draws), each
  with its breakdown and the compute bound of its plan,
- the same through a cold `unlearn-ops forget` process (wall time of the command),
- a full retrain through the `train-ensemble` flow, warm (checkpoints cleared first),

so the pipeline's fixed overhead over pure retraining is visible, cold and warm. Shards
train one at a time on one torch thread, as in the core benchmark, so that the times
compare work with work rather than with how many cores the machine has.

Costs that follow the shards (issue 15) are measured beside them: the artifact bytes
each version adds to the MLflow store (a full version against a one-record forget, whose
target is at most retrained/S of a full version plus 5% of it), and the commands as a
user types them on a second workspace of the same workload: `unlearn-ops train`, then
one-record `unlearn-ops forget` commands, each a new process on the embedded default,
once the workspace has been used (its local Prefect server started first and timed apart).

The flows come in as :class:`BenchFlows` from the composition root (the CLI): the library
never imports `pipelines`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn_ops.params import Params
from unlearn_ops.settings import Settings

__all__ = ["BenchFlows", "flow_markdown", "run_flow_benchmark"]


@dataclass(frozen=True)
class BenchFlows:
    """The flows that the benchmark times, each run to its end on a workspace root.

    Attributes:
        train: runs the `train-ensemble` flow: `train(root, settings)` returns its result.
        forget: runs the `forget-records` flow: `forget(root, requests, settings)` returns
            its result; `requests` are forget requests as JSON objects.
    """

    train: Callable[[str, Settings], dict[str, Any]]
    forget: Callable[[str, list[dict[str, Any]], Settings], dict[str, Any]]


_PHASES = ("data", "retraining", "evaluation", "gates", "lineage", "registration")
# Sequential shards on one CPU thread: the figures measure work, not the machine's width.
_BENCH_ENVIRONMENT = {
    "UNLEARN_OPS_DEVICE": "cpu",
    "UNLEARN_OPS_TORCH_THREADS": "1",
    "UNLEARN_OPS_MAX_PARALLEL_SHARDS": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _breakdown(result: dict[str, Any], total: float) -> dict[str, float]:
    timings = {phase: float(result["timings"].get(phase, 0.0)) for phase in _PHASES}
    timings["orchestration"] = max(total - sum(timings.values()), 0.0)
    timings["total"] = total
    timings["overhead"] = total - timings["retraining"]
    return timings


def _pick_record(root: Path, rng: random.Random) -> str:
    import pandas as pd

    ids = sorted(
        str(r)
        for path in sorted((root / "data" / "shards").glob("*.parquet"))
        for r in pd.read_parquet(path, columns=["record_id"])["record_id"]
    )
    return rng.choice(ids)


def _bound(result: dict[str, Any]) -> float:
    """Examples of a full retrain over examples of this forget: its speed-up with no overhead."""
    plan = result["plan"]
    return float(plan["ensemble_cost"]) / plan["cost"] if plan["cost"] else float("inf")


def run_flow_benchmark(
    name: str,
    dataset: str,
    params: dict[str, Any],
    work_dir: Path,
    seed: int = 0,
    repeats: int = 3,
    *,
    flows: BenchFlows,
) -> dict[str, Any]:
    """Measure the flows on one workload; returns figures in seconds.

    Args:
        name: the workload's name.
        dataset: a built-in dataset name.
        params: the workload's params (merged over the defaults).
        work_dir: where to build the workspace.
        seed: seed of the params and of the record draws.
        repeats: one-record forgets timed in the warm process.
        flows: the flows to time.
    """
    from unlearn_ops.adapters.dvc.lineage import init_repository
    from unlearn_ops.settings import load_settings
    from unlearn_ops.workflow.workspace import write_workspace_files

    root = work_dir / ("flows-" + "".join(c if c.isalnum() else "-" for c in name))
    full = Params.from_mapping(
        {
            "seed": seed,
            **params,
            "dataset": {"source": dataset},
            "gates": params.get("gates", {"min_accuracy": 0.5, "max_accuracy_drop": 0.05}),
            "registry": {"model_name": "bench-" + "".join(c if c.isalnum() else "-" for c in name)},
        }
    )
    rng = random.Random(seed)  # noqa: S311 - a benchmark draw, not a secret
    with _environment(_BENCH_ENVIRONMENT):
        settings = load_settings()
        write_workspace_files(root, full)
        init_repository(root)

        artifacts = root / "mlartifacts"
        started = time.perf_counter()
        first = flows.train(str(root), settings)
        first_seconds = time.perf_counter() - started
        full_bytes = _folder_bytes(artifacts)

        warm_draws = []
        for draw in range(repeats):
            record = _pick_record(root, rng)
            before = _folder_bytes(artifacts)
            started = time.perf_counter()
            result = flows.forget(
                str(root), [{"request_id": f"bench-warm-{draw}", "record_ids": [record]}], settings
            )
            seconds = time.perf_counter() - started
            warm_draws.append(
                {
                    **_breakdown(result, seconds),
                    "bound": _bound(result),
                    "cost": result["plan"]["cost"],
                    "ensemble_cost": result["plan"]["ensemble_cost"],
                    "retrained": result["retrained"],
                    "artifact_bytes_added": _folder_bytes(artifacts) - before,
                }
            )

        command = [
            str(Path(sys.executable).parent / "unlearn-ops"),
            "forget",
            "--ids",
            _pick_record(root, rng),
            "--request-id",
            "bench-cold",
            "--workspace",
            str(root),
            "--json",
            "--no-progress",
        ]
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        cold_seconds = time.perf_counter() - started
        if completed.returncode != 0:
            raise RuntimeError(f"cold forget failed: {completed.stderr.strip()[-500:]}")
        cold = json.loads(completed.stdout)

        shutil.rmtree(root / "checkpoints", ignore_errors=True)
        for model in (root / "models").glob("*.pt"):
            model.unlink()
        started = time.perf_counter()
        retrain = flows.train(str(root), settings)
        retrain_seconds = time.perf_counter() - started
        from unlearn_ops.adapters.prefect.server import stop_server

        stop_server(root)  # the cold CLI forget started it
        commands = _time_commands(root.with_name(root.name + "-cli"), full, rng)

    def mean(key: str) -> float:
        return statistics.fmean(d[key] for d in warm_draws)

    warm = {key: mean(key) for key in (*_PHASES, "orchestration", "total", "overhead")}
    # The bound of the mean forget: full cost over mean forget cost, like the speed-up.
    warm["bound"] = mean("ensemble_cost") / mean("cost") if mean("cost") else float("inf")
    retrain_breakdown = _breakdown(retrain, retrain_seconds)
    one_shard = retrain_breakdown["retraining"] / full.sisa.shards
    return {
        "workload": name,
        "shards": full.sisa.shards,
        "slices": full.sisa.slices,
        "accuracy": first["accuracy"],
        "first_train_flow": _breakdown(first, first_seconds),
        "full_retrain_flow": retrain_breakdown,
        "forget_warm_draws": warm_draws,
        "forget_warm": warm,
        "forget_cold_cli": {
            **_breakdown(cold, cold_seconds),
            "bound": _bound(cold),
            "note": "wall time of a new `unlearn-ops forget` process",
        },
        # Ratio of mean times (total work over total work), not a mean of ratios.
        "speedup_full_over_forget_warm": retrain_seconds / warm["total"],
        "speedup_full_over_forget_cold": retrain_seconds / cold_seconds,
        "one_shard_retraining_seconds": one_shard,
        "warm_overhead_below_one_shard": warm["overhead"] < one_shard,
        "artifact_bytes": _artifact_bytes(full_bytes, warm_draws, full.sisa.shards),
        "commands": commands,
    }


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _artifact_bytes(full: int, draws: list[dict[str, Any]], shards: int) -> dict[str, Any]:
    """Bytes a forget added against a full version, and the issue's limit for each."""
    rows = []
    for draw in draws:
        retrained = len(draw["retrained"])
        limit = retrained / shards * full + 0.05 * full
        added = int(draw["artifact_bytes_added"])
        rows.append({"retrained": retrained, "added": added, "limit": limit, "met": added <= limit})
    return {"full_version": full, "forgets": rows}


def _unlearn_ops(argv: list[str], **settings: str) -> tuple[float, dict[str, Any]]:
    """Run one `unlearn-ops` command in a new process; its wall time and JSON answer.

    `settings` are extra environment variables (`UNLEARN_OPS_WARM_RUNNER="false"`).
    """
    command = [str(Path(sys.executable).parent / "unlearn-ops"), *argv]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    environment["UNLEARN_OPS_PREFECT_SERVER"] = "local"  # the defaults, as a user has them
    environment["UNLEARN_OPS_WARM_RUNNER"] = "true"
    environment.update(settings)
    started = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 - our own console script
        command, capture_output=True, text=True, check=False, env=environment
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {completed.stderr.strip()[-500:]}")
    answer: dict[str, Any] = json.loads(completed.stdout)
    return seconds, answer


def _time_commands(root: Path, params: Params, rng: random.Random) -> dict[str, Any]:
    """`train`, then one-record `forget` commands, each a new process, as a user types them.

    Each forget through the workspace's warm runner (the default) is followed by one in its
    own process (`UNLEARN_OPS_WARM_RUNNER=false`): the runner's gain, side by side.
    """
    from unlearn_ops.adapters.dvc.lineage import init_repository
    from unlearn_ops.workflow.workspace import write_workspace_files

    write_workspace_files(root, params)
    init_repository(root)
    where = ["-w", str(root), "--json"]
    try:
        server_seconds, _ = _unlearn_ops(["server", "start", *where])
        train_seconds, _ = _unlearn_ops(["train", *where, "--no-progress"])
        forgets: list[dict[str, float]] = []
        alone: list[dict[str, float]] = []
        for draw in range(6):
            ids = ["--ids", _pick_record(root, rng), "--request-id", f"bench-cli-{draw}"]
            own_process = {"UNLEARN_OPS_WARM_RUNNER": "false"} if draw % 2 else {}
            seconds, answer = _unlearn_ops(["forget", *ids, *where, "--no-progress"], **own_process)
            retraining = float(answer["timings"].get("retraining", 0.0))
            (alone if own_process else forgets).append(
                {"total": seconds, "retraining": retraining, "overhead": seconds - retraining}
            )
    finally:
        _unlearn_ops(["server", "stop", *where])  # the Prefect server and the warm runner
    mean_forget = statistics.fmean(f["total"] for f in forgets)
    return {
        "server_start": server_seconds,
        "train": train_seconds,
        "forgets": forgets,
        "forget_mean": mean_forget,
        "forget_overhead_mean": statistics.fmean(f["overhead"] for f in forgets),
        "forgets_own_process": alone,
        "forget_overhead_own_process_mean": statistics.fmean(f["overhead"] for f in alone),
        "train_over_forget": train_seconds / mean_forget,
    }


def flow_markdown(runs: list[dict[str, Any]]) -> list[str]:
    """Markdown lines for the flow figures."""
    lines = [
        "",
        "End to end through the flows (seconds; shards one at a time): one-record forgets, "
        "request to promoted version, against a full retrain through the same flow. "
        "Overhead = everything but retraining; orchestration = Prefect and what no phase "
        "timed.",
        "",
        "| workload | run | total | retraining | overhead | data | evaluation | gates | "
        "lineage | registration | orchestration |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        labels = {
            "first_train_flow": "first train (cold: starts Prefect)",
            "full_retrain_flow": "full retrain (warm)",
            "forget_warm": f"forget 1 (warm, mean of {len(run['forget_warm_draws'])})",
            "forget_cold_cli": "forget 1 (cold CLI process)",
        }
        for key, label in labels.items():
            t = run[key]
            lines.append(
                f"| {run['workload']} | {label} | {t['total']:.1f} | {t['retraining']:.1f} | "
                f"{t['overhead']:.1f} | {t['data']:.2f} | {t['evaluation']:.2f} | "
                f"{t['gates']:.2f} | {t['lineage']:.2f} | {t['registration']:.2f} | "
                f"{t['orchestration']:.2f} |"
            )
    lines += [
        "",
        "| workload | S x R | accuracy | full / forget (warm) | its compute bound "
        "| full / forget (cold) | one shard retrains in | warm overhead below it |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {run['workload']} | {run['shards']} x {run['slices']} | {run['accuracy']:.4f} | "
        f"**{run['speedup_full_over_forget_warm']:.1f}x** | {run['forget_warm']['bound']:.1f}x | "
        f"{run['speedup_full_over_forget_cold']:.1f}x | "
        f"{run['one_shard_retraining_seconds']:.1f} s | "
        f"{'yes' if run['warm_overhead_below_one_shard'] else 'NO'} |"
        for run in runs
    ]
    lines += [
        "",
        "Artifact bytes a version adds to the MLflow store (shard weights stored once by "
        "content): a one-record forget against the limit (retrained/S) x full + 5% of full.",
        "",
        "| workload | full version | forget: shards retrained | bytes added | limit | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        sizes = run.get("artifact_bytes", {"full_version": 0, "forgets": []})
        lines += [
            f"| {run['workload']} | {sizes['full_version']:,} | {row['retrained']} | "
            f"{row['added']:,} | {row['limit']:,.0f} | {'yes' if row['met'] else 'NO'} |"
            for row in sizes["forgets"]
        ]
    lines += [
        "",
        "Commands as a user types them, each a new process on the embedded default, once "
        "the workspace's Prefect server runs (seconds; its start is timed apart), through the "
        "workspace's warm runner (the default; `train` starts it), each followed by one in "
        "its own process (`UNLEARN_OPS_WARM_RUNNER=false`). Target: forget overhead <= 10 s, "
        "train / forget >= 5x.",
        "",
        "| workload | server start | train | forget (each) | forget overhead (mean) "
        "| train / forget | own process: forget (each) | own process: overhead (mean) |",
        "|---|---:|---:|---|---:|---:|---|---:|",
    ]
    lines += [
        f"| {run['workload']} | {c['server_start']:.1f} | {c['train']:.1f} | "
        f"{', '.join(format(f['total'], '.1f') for f in c['forgets'])} | "
        f"{c['forget_overhead_mean']:.1f} | **{c['train_over_forget']:.1f}x** | "
        f"{', '.join(format(f['total'], '.1f') for f in c['forgets_own_process'])} | "
        f"{c['forget_overhead_own_process_mean']:.1f} |"
        for run in runs
        if (c := run.get("commands"))
    ]
    return lines

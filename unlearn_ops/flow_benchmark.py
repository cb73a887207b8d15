"""End-to-end benchmark of the flows: a one-record forget, request to promoted version.

For a workload of the core benchmark it builds a real workspace (git + DVC, embedded
MLflow, Prefect's ephemeral server) and measures, in one process:

- the `train-ensemble` flow (the first flow of the process: it also starts Prefect),
- a one-record `forget-records` flow in this warm process, with its breakdown,
- the same through a cold `unlearn-ops forget` process (wall time of the command),
- a full retrain through the `train-ensemble` flow, warm (checkpoints cleared first),

so the pipeline's fixed overhead over pure retraining is visible, cold and warm.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from unlearn_ops.params import Params

__all__ = ["run_flow_benchmark"]

_PHASES = ("data", "retraining", "evaluation", "gates", "lineage", "registration")


def _breakdown(result: dict[str, Any], total: float) -> dict[str, float]:
    timings = {phase: float(result["timings"].get(phase, 0.0)) for phase in _PHASES}
    timings["orchestration"] = max(total - sum(timings.values()), 0.0)
    timings["total"] = total
    timings["overhead"] = total - timings["retraining"]
    return timings


def _pick_record(root: Path, seed: int) -> str:
    import pandas as pd

    ids = sorted(
        str(r)
        for path in sorted((root / "data" / "shards").glob("*.parquet"))
        for r in pd.read_parquet(path, columns=["record_id"])["record_id"]
    )
    return random.Random(seed).choice(ids)  # noqa: S311 - a benchmark draw


def run_flow_benchmark(
    name: str, dataset: str, params: dict[str, Any], work_dir: Path, seed: int = 0
) -> dict[str, Any]:
    """Measure the flows on one workload; returns figures in seconds."""
    from pipelines.forget import forget_records
    from pipelines.train import train_ensemble
    from unlearn_ops.adapters.dvc_lineage import init_repository
    from unlearn_ops.workspace import write_workspace_files

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    root = work_dir / f"flows-{name}"
    full = Params.from_mapping(
        {
            "seed": seed,
            **params,
            "dataset": {"source": dataset},
            "gates": {"min_accuracy": 0.5, "max_accuracy_drop": 0.05},
            "registry": {"model_name": f"bench-{name}"},
        }
    )
    write_workspace_files(root, full)
    init_repository(root)

    started = time.perf_counter()
    first = train_ensemble(str(root))
    first_seconds = time.perf_counter() - started

    record = _pick_record(root, seed)
    started = time.perf_counter()
    warm = forget_records(str(root), [{"request_id": "bench-warm", "record_ids": [record]}])
    warm_seconds = time.perf_counter() - started

    record = _pick_record(root, seed + 1)
    command = [
        str(Path(sys.executable).parent / "unlearn-ops"),
        "forget",
        "--ids",
        record,
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
    retrain = train_ensemble(str(root))
    retrain_seconds = time.perf_counter() - started

    shards = full.sisa.shards
    warm_breakdown = _breakdown(warm, warm_seconds)
    retrain_breakdown = _breakdown(retrain, retrain_seconds)
    return {
        "workload": name,
        "record_shards": {"warm": warm["retrained"], "cold": cold["retrained"]},
        "first_train_flow": _breakdown(first, first_seconds),
        "full_retrain_flow": retrain_breakdown,
        "forget_warm": warm_breakdown,
        "forget_cold_cli": {
            **_breakdown(cold, cold_seconds),
            "note": "wall time of a new `unlearn-ops forget` process",
        },
        "speedup_full_over_forget_warm": retrain_seconds / warm_seconds,
        "one_shard_retraining_seconds": retrain_breakdown["retraining"] / shards,
        "warm_overhead_below_one_shard": warm_breakdown["overhead"]
        < retrain_breakdown["retraining"] / shards,
    }


def flow_markdown(runs: list[dict[str, Any]]) -> list[str]:
    """Markdown lines for the flow figures."""
    lines = [
        "",
        "End to end through the flows (seconds): a one-record forget, request to promoted "
        "version, against a full retrain through the same flow.",
        "",
        "| workload | run | total | retraining | overhead | data | evaluation | gates | "
        "lineage | registration | orchestration |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "full_retrain_flow": "full retrain (warm)",
        "forget_warm": "forget 1 (warm process)",
        "forget_cold_cli": "forget 1 (cold CLI)",
        "first_train_flow": "first train (cold)",
    }
    for run in runs:
        for key, label in labels.items():
            t = run[key]
            lines.append(
                f"| {run['workload']} | {label} | {t['total']:.1f} | {t['retraining']:.1f} | "
                f"{t['overhead']:.1f} | {t['data']:.2f} | {t['evaluation']:.2f} | "
                f"{t['gates']:.2f} | {t['lineage']:.2f} | {t['registration']:.2f} | "
                f"{t['orchestration']:.2f} |"
            )
        lines.append(
            f"| {run['workload']} | **full / forget (warm)** | "
            f"**{run['speedup_full_over_forget_warm']:.1f}x** | one shard retrains in "
            f"{run['one_shard_retraining_seconds']:.1f} s | warm overhead below it: "
            f"{'yes' if run['warm_overhead_below_one_shard'] else 'NO'} | | | | | | |"
        )
    return lines

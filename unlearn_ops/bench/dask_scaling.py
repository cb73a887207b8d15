"""Dask scaling: the same heavy shards trained on 1 and on 2 worker processes, side by side.

Issue 15 asks that a local cluster of 2 worker processes train 4 heavy shards (MNIST-5k,
the CNN of the heavy workload) at least 1.6x faster than 1 worker, with identical weights
hashes. Each shard is a from-scratch retraining (the certificate's job: a table in, hashes
out, never tensors), so both runs do exactly the same work; the clusters' start-up is
reported apart from the training time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unlearn_ops.bench.workloads import Workload
from unlearn_ops.params import Params
from unlearn_ops.settings import Settings

__all__ = ["DASK_WORKLOAD", "dask_markdown", "run_dask_scaling"]

DASK_WORKLOAD = "mnist-cnn"
"""The workload whose params the scaling run trains (4 shards, as in the issue)."""


def run_dask_scaling(
    workload: Workload,
    work_dir: Path,
    *,
    seed: int = 0,
    shards: int = 4,
    worker_counts: tuple[int, ...] = (1, 2),
    epochs_per_stage: int | None = None,
) -> dict[str, Any]:
    """Train `shards` shards from scratch on LocalClusters of each worker count.

    Args:
        workload: a built-in dataset and its params (S is set to `shards`).
        work_dir: where the shard files are written.
        seed: the params' seed.
        shards: shards to train (S).
        worker_counts: cluster sizes, run one after the other.
        epochs_per_stage: a smaller value for a reduced run (the figures say so).

    Returns:
        Per cluster size the seconds, and whether every run gave the same hashes.
    """
    from unlearn_ops.adapters.dask.cluster import map_on_local_cluster
    from unlearn_ops.sisa.datasets import BUILTIN_DATASETS
    from unlearn_ops.sisa.ensemble import SisaEnsemble
    from unlearn_ops.sisa.verification import ScratchJob, retrain_from_scratch

    mapping = {**workload.params, "seed": seed}
    mapping["sisa"] = {**mapping.get("sisa", {}), "shards": shards}
    if epochs_per_stage is not None:
        mapping["training"] = {**mapping.get("training", {}), "epochs_per_stage": epochs_per_stage}
    params = Params.from_mapping(mapping)
    settings = Settings(device="cpu", torch_threads=1, max_parallel_shards=1)
    ensemble = SisaEnsemble(work_dir / "dask-scaling", params, settings)
    ensemble.prepare(BUILTIN_DATASETS[workload.dataset]())
    columns = ensemble.columns()
    jobs = [
        ScratchJob(s, ensemble.read_shard(s), params, columns, "cpu", 1) for s in ensemble.shard_ids
    ]
    runs: list[dict[str, Any]] = []
    for workers in worker_counts:
        timed = map_on_local_cluster(retrain_from_scratch, jobs, workers)
        runs.append(
            {
                "workers": workers,
                "seconds": timed.map_seconds,
                "start_seconds": timed.start_seconds,
                "worker_processes": len(set(timed.worker_pids)),
                "hashes": [r.weights_hash for r in timed.results],
            }
        )
    base = float(runs[0]["seconds"])
    for run in runs:
        run["speedup"] = base / run["seconds"] if run["seconds"] else 0.0
    return {
        "dataset": workload.dataset,
        "shards": shards,
        "params": params.model_dump(mode="json"),
        "epochs_per_stage": params.training.epochs_per_stage,
        "reduced": epochs_per_stage is not None,
        "runs": runs,
        "identical_hashes": all(run["hashes"] == runs[0]["hashes"] for run in runs),
    }


def dask_markdown(result: dict[str, Any]) -> list[str]:
    """The scaling table (lines of markdown)."""
    lines = [
        "",
        f"Dask scaling: {result['shards']} shards of {result['dataset']} (the heavy CNN, "
        f"{result['epochs_per_stage']} epochs per stage"
        f"{', reduced' if result['reduced'] else ''}), trained from scratch on LocalClusters "
        "of single-thread worker processes, one after the other. Identical weights hashes: "
        f"{'yes' if result['identical_hashes'] else 'NO'}.",
        "",
        "| workers | train s | speed-up vs 1 worker | cluster start s |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['workers']} | {r['seconds']:.1f} | {r['speedup']:.2f}x | {r['start_seconds']:.1f} |"
        for r in result["runs"]
    ]
    return lines

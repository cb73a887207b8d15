"""The SISA benchmark harness behind `make bench`: what forgetting costs against retraining.

For each workload (dataset x model) it measures, in one process and one run:

- (a) training the whole ensemble from scratch,
- (b) a monolithic model of the same family on all the training data,
- (c) forgetting 1 random record and (d) forgetting 10 random records at once, each over
  several random draws, every draw on a fresh copy of the trained ensemble,

with held-out accuracy of the ensemble and of the monolithic model, and next to each
measured speed-up the compute bound of the schedule: examples processed by the full run
over examples processed by the forget (what the speed-up would be with no fixed costs).
Training is sequential on one thread so that times compare like with like.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unlearn_ops.approx.monolithic import monolithic_epochs, train_monolithic
from unlearn_ops.bench.tables import markdown_table
from unlearn_ops.bench.workloads import FLOW_WORKLOADS, QUICK, SWEEPS, WORKLOADS, Workload
from unlearn_ops.errors import ConfigError
from unlearn_ops.params import Params
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.datasets import BUILTIN_DATASETS
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.sisa.planning import plan_retraining
from unlearn_ops.sisa.sharding import SLICE_COLUMN
from unlearn_ops.sisa.training import ShardColumns

if TYPE_CHECKING:
    from unlearn_ops.bench.flows import BenchFlows

__all__ = ["WORKLOADS", "Workload", "run_benchmark"]


def _train_monolithic(ensemble: SisaEnsemble, params: Params) -> tuple[float, int, float]:
    """(seconds, examples processed, held-out accuracy) of one model on all training data.

    Same model family, optimizer and batch size, and the same training budget as the whole
    ensemble: the SISA schedule runs `epochs_per_stage x (R + 1) / 2` epochs' worth of examples
    over the training set, so the monolithic model trains for that many epochs (rounded up).
    The model is the one a monolithic workspace trains
    (:func:`unlearn_ops.approx.monolithic.train_monolithic`).
    """
    import numpy as np
    import pandas as pd
    import torch

    columns = ensemble.columns()
    table = pd.concat([ensemble.read_shard(s) for s in ensemble.shard_ids], ignore_index=True)
    started = time.perf_counter()
    module = train_monolithic(
        table, columns, params, params.seed, threads=ensemble.settings.torch_threads
    )
    seconds = time.perf_counter() - started
    # One stage of one slice: every record, every epoch.
    samples = monolithic_epochs(params) * len(table)
    holdout = ensemble.read_holdout()
    features = torch.from_numpy(
        holdout[list(columns.feature_columns)].to_numpy(dtype=np.float32, copy=True)
    )
    with torch.no_grad():
        predicted = module(features).argmax(dim=1).numpy()
    accuracy = float((predicted == holdout[columns.label_column].to_numpy()).mean())
    return seconds, samples, accuracy


def _forget_draws(
    trained_root: Path,
    params: Params,
    settings: Settings,
    *,
    size: int,
    repeats: int,
    seed: int,
    full_seconds: float,
    full_samples: int,
    mono_seconds: float,
    mono_samples: int,
) -> list[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - a benchmark draw, not a secret
    reference = SisaEnsemble(trained_root, params, settings)
    columns: ShardColumns = reference.columns()
    pool = sorted(
        (r for s in reference.shard_ids for r in reference.read_shard(s)[columns.id_column]),
        key=str,
    )
    draws = []
    for draw in range(repeats):
        chosen = rng.sample(pool, size)
        with tempfile.TemporaryDirectory(prefix="unlearn-bench-") as scratch:
            root = Path(scratch) / "ensemble"
            shutil.copytree(trained_root, root)
            ensemble = SisaEnsemble(root, params, settings)
            started = time.perf_counter()
            report = ensemble.forget(chosen)
            seconds = time.perf_counter() - started
            samples = report.training.samples_processed
        draws.append(
            {
                "draw": draw,
                "records": [str(r) for r in chosen],
                "shards": report.plan.shard_ids,
                "first_stages": [s.first_stage for s in report.plan.shards],
                "seconds": seconds,
                "samples": samples,
                "speedup_vs_full": full_seconds / seconds,
                "bound_vs_full": full_samples / samples if samples else float("inf"),
                "speedup_vs_mono": mono_seconds / seconds,
                "bound_vs_mono": mono_samples / samples if samples else float("inf"),
            }
        )
    return draws


def _summarise(draws: Sequence[dict[str, Any]]) -> dict[str, float]:
    def mean(key: str) -> float:
        return statistics.fmean(d[key] for d in draws)

    # Speed-ups are ratios: aggregate with the ratio of total times, not a mean of ratios.
    return {
        "seconds_mean": mean("seconds"),
        "seconds_min": min(d["seconds"] for d in draws),
        "seconds_max": max(d["seconds"] for d in draws),
        "speedup_vs_full": mean("speedup_vs_full"),
        "bound_vs_full": mean("bound_vs_full"),
        "speedup_vs_mono": mean("speedup_vs_mono"),
        "bound_vs_mono": mean("bound_vs_mono"),
        "share_of_bound": statistics.fmean(
            d["speedup_vs_full"] / d["bound_vs_full"] for d in draws
        ),
    }


def _run_workload(workload: Workload, work_dir: Path, repeats: int, seed: int) -> dict[str, Any]:
    params = Params.from_mapping({"seed": seed, **workload.params})
    settings = Settings(device="cpu", torch_threads=1, max_parallel_shards=1)
    dataset = BUILTIN_DATASETS[workload.dataset]()
    root = work_dir / workload.name
    ensemble = SisaEnsemble(root, params, settings)
    ensemble.prepare(dataset)
    report = ensemble.train()
    full_seconds = report.seconds
    full_samples = report.samples_processed
    ensemble_accuracy = ensemble.evaluate()
    mono_seconds, mono_samples, mono_accuracy = _train_monolithic(ensemble, params)

    forgets = {}
    for size in (1, 10):
        draws = _forget_draws(
            root,
            params,
            settings,
            size=size,
            repeats=repeats,
            seed=seed + size,
            full_seconds=full_seconds,
            full_samples=full_samples,
            mono_seconds=mono_seconds,
            mono_samples=mono_samples,
        )
        forgets[str(size)] = {"draws": draws, "summary": _summarise(draws)}
    return {
        "workload": workload.name,
        "description": workload.description,
        "params": params.model_dump(mode="json"),
        "train_records": sum(len(ensemble.read_shard(s)) for s in ensemble.shard_ids),
        "holdout_records": len(ensemble.read_holdout()),
        "full": {"seconds": full_seconds, "samples": full_samples},
        "monolithic": {"seconds": mono_seconds, "samples": mono_samples},
        "accuracy": {
            "ensemble": ensemble_accuracy,
            "monolithic": mono_accuracy,
            "gap_points": 100 * (mono_accuracy - ensemble_accuracy),
        },
        "forget": forgets,
    }


def expected_single_forget_bound(ensemble: SisaEnsemble) -> float:
    """Mean, over every training record, of the compute bound of forgetting it alone.

    Exact for the current layout: each (shard, slice) cell is planned once and weighted by
    the records it holds.
    """
    counts = {
        s: np.bincount(
            ensemble.read_shard(s)[SLICE_COLUMN].to_numpy(dtype=np.int64),
            minlength=ensemble.params.sisa.slices,
        ).tolist()
        for s in ensemble.shard_ids
    }
    total_records = sum(sum(c) for c in counts.values())
    weighted = 0.0
    for shard, per_slice in counts.items():
        for slice_id, records in enumerate(per_slice):
            if records:
                plan = plan_retraining(counts, {shard: [slice_id]})
                weighted += records * plan.compute_bound
    return weighted / total_records


def _shard_sweep(
    dataset_name: str,
    base: dict[str, Any],
    work_dir: Path,
    seed: int,
    shard_counts: Sequence[int],
) -> list[dict[str, Any]]:
    """Accuracy and expected one-record bound for several S, to choose S with numbers."""
    dataset = BUILTIN_DATASETS[dataset_name]()
    settings = Settings(device="cpu", torch_threads=1, max_parallel_shards=1)
    rows = []
    mono_accuracy = None
    for shards in shard_counts:
        params = Params.from_mapping(
            {"seed": seed, **base, "sisa": {**base["sisa"], "shards": shards}}
        )
        ensemble = SisaEnsemble(work_dir / f"sweep-{shards}", params, settings)
        ensemble.prepare(dataset)
        report = ensemble.train()
        if mono_accuracy is None:  # the same training set for every S
            _, _, mono_accuracy = _train_monolithic(ensemble, params)
        accuracy = ensemble.evaluate()
        rows.append(
            {
                "shards": shards,
                "slices": params.sisa.slices,
                "accuracy": accuracy,
                "monolithic_accuracy": mono_accuracy,
                "gap_points": 100 * (mono_accuracy - accuracy),
                "expected_single_forget_bound": expected_single_forget_bound(ensemble),
                "train_seconds": report.seconds,
            }
        )
    return rows


def _warm_up() -> None:
    """One tiny training, so that one-off kernel set-up is not timed in the first workload."""
    with tempfile.TemporaryDirectory(prefix="unlearn-bench-warm-") as scratch:
        ensemble = SisaEnsemble(
            Path(scratch), Params.from_mapping(QUICK.params), Settings(device="cpu")
        )
        ensemble.fit(BUILTIN_DATASETS["digits"]())
        ensemble.evaluate()


def run_benchmark(
    output: Path,
    *,
    quick: bool = False,
    repeats: int = 3,
    only: Sequence[str] | None = None,
    seed: int = 0,
    sweep: bool = True,
    flows: BenchFlows | None = None,
) -> str:
    """Run the workloads, write `results.json` and `results.md` into `output`.

    Args:
        output: folder for the results (created).
        quick: run one tiny workload instead (checks the harness; numbers mean nothing).
        repeats: random draws per forget size.
        only: workload names to run; all when None.
        sweep: also run the shard sweeps (accuracy against S on MNIST-5k, MLP and CNN).
        flows: the flows, to also time them end to end on the MNIST workloads (the CLI
            passes them in: the library does not import `pipelines`).
        seed: seed of the params and of the draws.

    Returns:
        The markdown table.
    """
    import torch

    workloads = [QUICK] if quick else [w for w in WORKLOADS if only is None or w.name in only]
    if not workloads:
        known = ", ".join(w.name for w in WORKLOADS)
        raise ConfigError("--only", [f"no workload named {', '.join(only or [])}; known: {known}"])
    results: dict[str, Any] = {
        "machine": {
            "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        "repeats": repeats,
        "workloads": [],
    }
    with tempfile.TemporaryDirectory(prefix="unlearn-bench-") as work:
        _warm_up()
        for workload in workloads:
            results["workloads"].append(_run_workload(workload, Path(work), repeats, seed))
        if flows:
            from unlearn_ops.bench.flows import run_flow_benchmark

            results["flows"] = []
            for w in workloads:
                if w.name not in FLOW_WORKLOADS and not quick:
                    continue
                override = FLOW_WORKLOADS.get(w.name, {})
                params = {**w.params, **override}
                sisa = params["sisa"]
                name = f"{w.name} S={sisa['shards']}" if override else w.name
                results["flows"].append(
                    run_flow_benchmark(
                        name, w.dataset, params, Path(work), seed, repeats, flows=flows
                    )
                )
        if sweep and not quick:
            results["sweeps"] = [
                {
                    "workload": w.name,
                    "rows": _shard_sweep(
                        w.dataset, w.params, Path(work) / f"sweep-{w.name}", seed, SWEEPS[w.name]
                    ),
                }
                for w in workloads
                if w.name in SWEEPS
            ]
        from unlearn_ops.bench.dask_scaling import DASK_WORKLOAD, run_dask_scaling

        for w in [w for w in workloads if w.name == DASK_WORKLOAD and not quick]:
            results["dask_scaling"] = run_dask_scaling(w, Path(work), seed=seed)
        from unlearn_ops.bench.privacy import PRIVACY_WORKLOAD, run_privacy_benchmark

        for w in [w for w in workloads if w.name == PRIVACY_WORKLOAD and not quick]:
            results["privacy"] = run_privacy_benchmark(w, Path(work), seed=seed)
        from unlearn_ops.bench.pair_risk import PAIR_WORKLOADS, run_pair_risk

        pair_names = [w.name for w in workloads if w.name in PAIR_WORKLOADS]
        if pair_names and not quick:
            results["pair_risk"] = run_pair_risk(pair_names, seed=seed)
        if only is None and not quick:  # issue 13: clients removed from a federation
            from unlearn_ops.bench.federated import run_federated_benchmark

            results["federated"] = run_federated_benchmark()
        if only is None and not quick:  # issue 15: the data path on a million records
            from unlearn_ops.bench.million import run_million_benchmark

            results["million"] = run_million_benchmark(Path(work), seed=seed)
        from unlearn_ops.bench.approx import APPROX_WORKLOADS, F_STUDY_N, run_approx_benchmark

        approx = [(w.name, w.dataset, w.params) for w in workloads if w.name in APPROX_WORKLOADS]
        if approx and not quick:
            results["approx"] = run_approx_benchmark(approx, seed=seed, f_study=F_STUDY_N)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(results)
    if "federated" in results:
        from unlearn_ops.bench.federated import federated_markdown

        table += federated_markdown(results["federated"])
    if "million" in results:
        from unlearn_ops.bench.million import million_markdown

        table += million_markdown(results["million"])
    (output / "results.md").write_text(table, encoding="utf-8")
    return table

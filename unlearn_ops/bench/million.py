"""The million-record benchmark: a generated tabular workload through the SISA data path.

Issue 15, item 4. `write_million` writes N x 32 rows of scikit-learn's
`make_classification` (seeded) to parquet with an id column, chunk by chunk; the
benchmark then runs prepare (from that file, in chunks), train, forget of 1, 1,000 and
10,000 ids, and the exactness certificate of the shard a one-record forget retrained, each
step in a fresh process so that its peak memory is its own. What it reports:

- planning time of 1, 1,000 and 10,000 deletions (the record index; no shard file read),
  with a warm index and, once, in a workspace whose index is absent (built on first use);
- peak memory of each step: `ru_maxrss` of its process minus the resident size just before
  the step (after the imports), against 3x the largest shard table in memory plus one
  shard model's weights;
- data files written by a one-record forget; wall times.

The data path is what is measured, not the model: a small MLP, one epoch per stage.
Each chunk of 100,000 rows is its own `make_classification` draw (a seed per chunk), so
that the file is written without holding it whole; the classes are therefore a mixture of
ten draws, which lowers accuracy and changes nothing measured here.

Run it alone: `python -m unlearn_ops.bench.million --rows 1000000 --output DIR`, or write
the data only: `python -m unlearn_ops.bench.million write --rows N --path FILE`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from unlearn_ops.atomic import write_atomic
from unlearn_ops.sisa.hashing import derive_seed

__all__ = ["PARAMS", "main", "million_markdown", "run_million_benchmark", "write_million"]

ROWS = 1_000_000
FEATURES = 32
CHUNK_ROWS = 100_000
FORGET_SIZES = (1, 1_000, 10_000)

#: Small and quick on purpose: the data path is measured, not the model.
PARAMS: dict[str, Any] = {
    "seed": 0,
    "dataset": {"source": "million.parquet"},
    "sisa": {"shards": 8, "slices": 2, "salt": "million"},
    "model": {"name": "mlp", "hidden_sizes": [16]},
    "training": {"epochs_per_stage": 1, "batch_size": 1024, "learning_rate": 0.01},
}


def write_million(path: Path, rows: int = ROWS, *, features: int = FEATURES, seed: int = 0) -> Path:
    """Write `rows` x `features` of `make_classification` with ids 0..rows-1, in chunks.

    Each chunk of :data:`CHUNK_ROWS` rows is one seeded draw; memory holds one chunk.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import make_classification

    def write(temp: Path) -> None:
        writer: pq.ParquetWriter | None = None
        try:
            for start in range(0, rows, CHUNK_ROWS):
                count = min(CHUNK_ROWS, rows - start)
                values, labels = make_classification(
                    n_samples=count,
                    n_features=features,
                    n_informative=min(8, features),
                    n_redundant=min(4, max(features - 8, 0)),
                    n_classes=2,
                    random_state=derive_seed(seed, "million", start) % 2**32,
                )
                frame = pd.DataFrame(
                    values.astype(np.float32), columns=[f"x{i}" for i in range(features)]
                )
                frame.insert(0, "label", labels.astype(np.int64))
                frame.insert(0, "record_id", np.arange(start, start + count, dtype=np.int64))
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(temp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()

    return write_atomic(path, write)


# ---------------------------------------------------------------------- one step, alone
def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _stamps(paths: list[Path]) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in paths}


def _warm_up(params: Any, root: Path) -> None:
    """Pay the runtimes' fixed costs before the baseline: one training step of the model on
    a few random rows (torch's allocator, thread pool, autograd) and one parquet read
    (arrow's memory pool). What the step adds above that is what its data costs."""
    import pyarrow.parquet as pq
    import torch

    from unlearn_ops.sisa.models import build_model

    model = build_model(params.model, FEATURES, 2)
    optimizer = torch.optim.Adam(model.parameters())
    inputs = torch.randn(64, FEATURES)
    loss: Any = torch.nn.functional.cross_entropy(model(inputs), torch.zeros(64, dtype=torch.long))
    loss.backward()
    optimizer.step()
    source = root / PARAMS["dataset"]["source"]
    if source.is_file():
        pq.ParquetFile(source).read_row_group(0)


def run_step(root: Path, step: str, ids: list[int]) -> dict[str, Any]:
    """One step of the benchmark in this process (`prepare`, `train`, `forget`, `plan`,
    `verify`); what it did, its wall time and its peak memory above the start."""
    import torch  # before the baseline: its import is not the step's memory

    from unlearn_ops.params import Params
    from unlearn_ops.settings import Settings
    from unlearn_ops.sisa import training  # noqa: F401
    from unlearn_ops.sisa.dataset_chunks import load_dataset_chunks
    from unlearn_ops.sisa.ensemble import SisaEnsemble

    torch.set_num_threads(1)
    params = Params.from_mapping(PARAMS)
    ensemble = SisaEnsemble(root, params, Settings(device="cpu", max_parallel_shards=1))
    _warm_up(params, root)
    gc.collect()
    baseline = _rss_bytes()
    started = time.perf_counter()
    result: dict[str, Any] = {"step": step}
    if step == "prepare":
        counts = ensemble.prepare(load_dataset_chunks(root / PARAMS["dataset"]["source"]))
        result["records"] = sum(counts.values())
    elif step == "train":
        result["shards"] = len(ensemble.train().models)
    elif step == "forget":
        files = [*sorted(ensemble.shards_dir.glob("*.parquet")), ensemble.holdout_path]
        before = _stamps(files)
        report = ensemble.forget(ids)
        after = _stamps(files)
        result["data_files_written"] = sum(before[k] != after[k] for k in before)
        result["retrained"] = report.plan.shard_ids
        result["forgotten"] = len(report.forgotten)
    elif step == "plan":
        for size in FORGET_SIZES:
            tick = time.perf_counter()
            plan = ensemble.plan_forget(ids[:size])
            result[f"plan_{size}_seconds"] = time.perf_counter() - tick
            result[f"plan_{size}_shards"] = len(plan.shards)
        result["index_entries_rebuilt"] = ensemble.record_index.rebuilt
    elif step == "verify":
        from unlearn_ops.sisa.verification import certify_exactness

        certificate = certify_exactness(ensemble, ids)
        result["exact"] = certificate.passed
    else:
        raise ValueError(f"unknown step {step!r}")
    result["seconds"] = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    result.update(baseline_rss=baseline, peak_rss=peak, peak_above_start=peak - baseline)
    return result


def _in_child(root: Path, step: str, ids: list[int]) -> dict[str, Any]:
    ids_file = root / f".bench-ids-{step}.json"
    ids_file.write_text(json.dumps(ids), encoding="utf-8")
    command = [sys.executable, "-m", "unlearn_ops.bench.million", "step", step]
    command += ["--root", str(root), "--ids", str(ids_file)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    ids_file.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"million bench step {step} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------ the benchmark
def run_million_benchmark(work: Path, rows: int = ROWS, *, seed: int = 0) -> dict[str, Any]:
    """Generate `rows` records and run the data path on them; the figures as a dict."""
    import shutil

    from unlearn_ops.params import Params
    from unlearn_ops.settings import Settings
    from unlearn_ops.sisa.ensemble import SisaEnsemble

    root = work / f"million-{rows}"
    root.mkdir(parents=True, exist_ok=True)
    tick = time.perf_counter()
    write_million(root / PARAMS["dataset"]["source"], rows, seed=seed)
    results: dict[str, Any] = {"rows": rows, "features": FEATURES, "params": PARAMS}
    results["write_seconds"] = time.perf_counter() - tick
    results["prepare"] = _in_child(root, "prepare", [])
    results["train"] = _in_child(root, "train", [])

    ensemble = SisaEnsemble(root, Params.from_mapping(PARAMS), Settings(device="cpu"))
    sizes = {s: ensemble.shard_path(s).stat().st_size for s in ensemble.shard_ids}
    largest = max(sizes, key=lambda s: sizes[s])
    table = ensemble.read_shard(largest)
    pool = np.concatenate(
        [ensemble.read_shard(s)["record_id"].to_numpy() for s in ensemble.shard_ids]
    )
    results["largest_shard_table_bytes"] = int(table.memory_usage(deep=True).sum())
    results["largest_shard_records"] = len(table)
    del table
    results["model_bytes"] = max(ensemble.model_path(s).stat().st_size for s in ensemble.shard_ids)
    results["memory_bound_bytes"] = 3 * results["largest_shard_table_bytes"] + int(
        results["model_bytes"]
    )
    rng = np.random.default_rng(seed)
    drawn = [int(i) for i in rng.permutation(pool)[: sum(FORGET_SIZES) + max(FORGET_SIZES)]]
    planned = drawn[sum(FORGET_SIZES) :]
    results["plan"] = _in_child(root, "plan", planned)
    index_dir = root / ".unlearn-ops" / "record-index"
    shutil.rmtree(index_dir)  # as a workspace made before the index
    results["plan_without_index"] = _in_child(root, "plan", planned)
    results["forgets"] = []
    offset = 0
    for size in FORGET_SIZES:
        results["forgets"].append(_in_child(root, "forget", drawn[offset : offset + size]))
        offset += size
    results["verify"] = _in_child(root, "verify", results["forgets"][0]["retrained"])
    bound = results["memory_bound_bytes"]
    results["within_memory_bound"] = {
        step["step"] + (f"-{step.get('forgotten')}" if step["step"] == "forget" else ""): step[
            "peak_above_start"
        ]
        <= bound
        for step in [results["train"], *results["forgets"]]
    }
    (root / PARAMS["dataset"]["source"]).unlink()
    return results


def million_markdown(results: dict[str, Any]) -> str:
    """The million-record section of `results.md`."""
    mib = 2**20
    plan = results["plan"]
    lines = [
        "",
        f"## A million records ({results['rows']:,} x {results['features']})",
        "",
        "| step | seconds | peak RSS above start (MiB) | bound: 3x largest shard + model (MiB) |",
        "|---|---|---|---|",
    ]
    bound = results["memory_bound_bytes"] / mib
    steps = [results["prepare"], results["train"], *results["forgets"], results["verify"]]
    for step in steps:
        name = step["step"] + (f" {step['forgotten']:,}" if step["step"] == "forget" else "")
        lines.append(
            f"| {name} | {step['seconds']:.1f} | {step['peak_above_start'] / mib:.0f} "
            f"| {bound:.0f} |"
        )
    lines += [
        "",
        "| deletions planned | seconds (index on disk) | seconds (no index: built first) |",
        "|---|---|---|",
    ]
    for size in FORGET_SIZES:
        lines.append(
            f"| {size:,} | {plan[f'plan_{size}_seconds']:.3f} "
            f"| {results['plan_without_index'][f'plan_{size}_seconds']:.3f} |"
        )
    one = results["forgets"][0]
    verdict = "passed" if results["verify"]["exact"] else "FAILED"
    lines += [
        "",
        f"Data files written by a one-record forget: {one['data_files_written']}; "
        f"exactness certificate of its shard: {verdict}; "
        f"largest shard table {results['largest_shard_table_bytes'] / mib:.1f} MiB "
        f"({results['largest_shard_records']:,} records), one shard model "
        f"{results['model_bytes'] / 1024:.1f} KiB. Peak memory is `ru_maxrss` of a fresh process "
        "per step minus its resident size just before the step.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m unlearn_ops.bench.million [write|step|run] ...`."""
    parser = argparse.ArgumentParser(prog="python -m unlearn_ops.bench.million")
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="Write the generated parquet file only.")
    write.add_argument("--rows", type=int, default=ROWS)
    write.add_argument("--path", type=Path, required=True)
    step = commands.add_parser("step", help="One step in this process (the benchmark's child).")
    step.add_argument("name")
    step.add_argument("--root", type=Path, required=True)
    step.add_argument("--ids", type=Path, required=True)
    run = commands.add_parser("run", help="The whole benchmark.")
    run.add_argument("--rows", type=int, default=ROWS)
    run.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "write":
        write_million(args.path, args.rows)
    elif args.command == "step":
        ids = json.loads(args.ids.read_text(encoding="utf-8"))
        print(json.dumps(run_step(args.root, args.name, ids)))
    else:
        args.output.mkdir(parents=True, exist_ok=True)
        results = run_million_benchmark(args.output, args.rows)
        (args.output / "million.json").write_text(json.dumps(results, indent=2) + "\n")
        print(million_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

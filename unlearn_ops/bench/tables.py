"""The benchmark's results as Markdown tables (`results.md`)."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown_table"]


def markdown_table(results: dict[str, Any]) -> str:
    """The whole results file: the core table, the shard sweeps, the flows, and a legend."""
    lines = [
        f"# SISA benchmark ({results['machine']['when']}, {results['machine']['cpus']} CPUs, "
        f"torch {results['machine']['torch']}, 1 thread, sequential shards)",
        "",
        "| workload | (a) full ensemble s | (b) monolithic s | acc ensemble | acc mono | "
        "forget | time s (min-max) | speed-up vs (a) | bound vs (a) | share of bound | "
        "speed-up vs (b) | bound vs (b) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in results["workloads"]:
        for size, forget in run["forget"].items():
            s = forget["summary"]
            lines.append(
                f"| {run['workload']} | {run['full']['seconds']:.1f} | "
                f"{run['monolithic']['seconds']:.1f} | {run['accuracy']['ensemble']:.4f} | "
                f"{run['accuracy']['monolithic']:.4f} | {size} record{'s' if size != '1' else ''}"
                f" x{len(forget['draws'])} | {s['seconds_mean']:.2f} ({s['seconds_min']:.2f}-"
                f"{s['seconds_max']:.2f}) | {s['speedup_vs_full']:.1f}x | "
                f"{s['bound_vs_full']:.1f}x | {s['share_of_bound']:.0%} | "
                f"{s['speedup_vs_mono']:.1f}x | {s['bound_vs_mono']:.1f}x |"
            )
    for sweep in results.get("sweeps", []):
        lines += [
            "",
            f"Shard sweep on {sweep['workload']} (R={sweep['rows'][0]['slices']}): "
            "accuracy against S, and the expected compute bound of a one-record forget.",
            "",
            "| S | acc ensemble | acc monolithic | gap (points) | expected bound | train s |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['shards']} | {r['accuracy']:.4f} | {r['monolithic_accuracy']:.4f} | "
            f"{r['gap_points']:+.2f} | {r['expected_single_forget_bound']:.1f}x | "
            f"{r['train_seconds']:.1f} |"
            for r in sweep["rows"]
        ]
    if results.get("flows"):
        from unlearn_ops.bench.flows import flow_markdown

        lines += flow_markdown(results["flows"])
    if results.get("dask_scaling"):
        from unlearn_ops.bench.dask_scaling import dask_markdown

        lines += dask_markdown(results["dask_scaling"])
    if results.get("privacy"):
        from unlearn_ops.bench.privacy import privacy_markdown

        lines += privacy_markdown(results["privacy"])
    if results.get("pair_risk"):
        from unlearn_ops.bench.pair_risk import pair_risk_markdown

        lines += [
            "",
            "## Privacy: release-pair risk and mitigations (docs/PRIVACY_AUDIT.md)",
            "",
            pair_risk_markdown(results["pair_risk"]),
        ]
    if results.get("approx"):
        from unlearn_ops.bench.approx import approx_markdown

        lines += ["", *approx_markdown(results["approx"])]
    lines += [
        "",
        "Speed-ups and bounds are means over the draws; the bound is examples processed by "
        "(a) or (b) over examples processed by the forget, i.e. the speed-up with no fixed "
        "costs. Share of bound = measured speed-up / bound, per draw, averaged.",
    ]
    return "\n".join(lines) + "\n"

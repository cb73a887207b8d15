"""The privacy rows of the benchmark harness, on digits with tiny settings (checks the harness)."""

from __future__ import annotations

from pathlib import Path

from unlearn_ops.bench.privacy import privacy_markdown, run_privacy_benchmark
from unlearn_ops.bench.workloads import Workload

TINY = {
    "sisa": {"shards": 4, "slices": 1},
    "model": {"name": "mlp", "hidden_sizes": [32]},
    "training": {"epochs_per_stage": 2, "batch_size": 64, "learning_rate": 0.01},
}


def test_the_privacy_section_audits_an_exact_and_a_weak_forget(tmp_path: Path) -> None:
    wider = {**TINY, "model": {"name": "mlp", "hidden_sizes": [48]}}
    section = run_privacy_benchmark(
        Workload("tiny", "digits", TINY, "digits, tiny MLP"),
        tmp_path,
        also=(),
        memorising=(Workload("wider", "digits", wider, "digits, wider MLP"),),
        forget=30,
        references=4,
        weak_references=2,
        weak_steps=2,
    )
    exact, weak = section["rows"]
    assert (section["dataset"], section["shards"], section["forgotten"]) == ("digits", 4, 30)
    assert [s["dataset"] for s in section["sections"]] == ["digits", "digits"]
    assert section["recipe"] == "MLP 32, 2 epochs a stage"
    assert section["sections"][1]["recipe"] == "memorising: MLP 48, 2 epochs a stage"
    assert exact["case"] == "exact SISA forget"
    assert exact["forgotten"] == weak["forgotten"] == 30
    assert exact["method"] == "online"  # 360 held-out records: enough to calibrate on
    assert exact["references"] == 3 + 4  # the other shards and the trained references
    assert weak["method"] == "offline"
    assert weak["references"] == 2
    # Not compared with the warm run's time (a timed assertion fails on a loaded machine):
    # that the warm run reads the cache is tests/privacy/test_references.py's to check.
    assert section["cold_seconds"] > 0
    assert exact["verdict"] in {"pass", "inconclusive"}  # an exact forget never fails
    for row in (exact, weak):
        assert row["auc"]["low"] <= row["auc"]["value"] <= row["auc"]["high"]
        assert row["positive_control_tpr_at_1pct_fpr"] is not None
        assert row["seconds"] > 0
    table = privacy_markdown(section)
    assert table[1].startswith(
        "## Privacy: membership audit (digits, S=4, MLP 32, 2 epochs a stage, 30 records"
    )
    assert sum(line.startswith("## Privacy: membership audit") for line in table) == 2
    assert any(
        line.startswith("## Privacy: membership audit (digits, S=4, memorising: MLP 48")
        for line in table
    )
    assert sum(line.startswith("| exact SISA forget |") for line in table) == 2
    assert sum(line.startswith("| weak forget (2 fine-tuning steps) |") for line in table) == 2

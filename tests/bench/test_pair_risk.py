"""The release-pair trade-off table: one row per workload and mitigation, risks beside costs."""

from __future__ import annotations

from unlearn_ops.bench.pair_risk import MITIGATIONS, pair_risk_markdown


def row(mitigation: str, **values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "mitigation": mitigation,
        "single_auc": 0.998,
        "single_auc_ci": [0.99, 1.0],
        "single_tpr": 1.0,
        "batch_auc": 0.79,
        "batch": 20,
        "single_positives": 120,
        "single_excess": 0.073,
        "single_excess_ci": [0.05, 0.09],
        "single_rank1": 1.0,
        "single_label": 0.9,
        "batch_excess": -0.02,
        "accuracy": 0.937,
        "accuracy_cost_points": 0.0,
    }
    return {**base, **values}


def test_the_table_puts_each_mitigation_beside_its_cost() -> None:
    results = {
        "digits-mlp": {
            "description": "digits",
            "rows": [
                row("none"),
                row(
                    "DP-SGD epsilon=8",
                    single_excess="not assessed",
                    single_excess_ci="not assessed",
                    single_rank1="not assessed",
                    single_label="not assessed",
                    batch_excess="not assessed",
                    accuracy=0.85,
                    accuracy_cost_points=8.7,
                ),
            ],
        }
    }

    lines = pair_risk_markdown(results).splitlines()

    assert len(lines) == 4
    assert lines[2].startswith(
        "| digits-mlp | none | 0.998 [0.990, 1.000] (120) | 1.000 | 0.790 (k=20) "
        "| 0.073 [0.050, 0.090] | 1.000 | 0.900 |"
    )
    assert lines[3].endswith(
        "| not assessed not assessed | not assessed | not assessed | not assessed "
        "| 0.8500 | +8.70 |"
    )


def test_no_mitigation_comes_first_as_the_baseline() -> None:
    assert MITIGATIONS[0] == ("none", {})

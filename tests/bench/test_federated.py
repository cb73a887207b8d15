"""The federated section of the benchmark runs end to end on tiny settings (checks the harness)."""

from __future__ import annotations

from unlearn_ops.bench.federated import (
    ENGINE,
    FEDERATED_PARAMS,
    federated_markdown,
    run_federated_benchmark,
)


def test_the_federated_section_measures_attack_detection_and_both_removals() -> None:
    params = FEDERATED_PARAMS.model_copy(update={"rounds": 2, "local_epochs": 1})
    results = run_federated_benchmark(seeds=(0,), num_clients=4, alpha=1.0, params=params)
    assert results["engine"] == ENGINE
    (row,) = results["seeds"]
    assert len(row["attackers"]) == 2
    assert row["exact"]["bit_equal_to_oracle"] is True  # exact removal = the oracle, bit for bit
    for request in row["exact"]["requests"]:
        assert request["client_rounds"] < request["full_retrain_client_rounds"]
    assert row["federaser"]["provisional"] is True
    assert row["federaser"]["client_epochs"] < row["federaser"]["retrain_client_epochs"]
    assert results["targets"]["exact_bit_equal"]["met"] is True
    table = federated_markdown(results)
    assert ENGINE in table
    assert "| 0 |" in table
    assert "exact_cost_ratio_max" in table

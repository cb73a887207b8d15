"""The federated section of the benchmark runs end to end on tiny settings (checks the harness)."""

from __future__ import annotations

import numpy as np

from unlearn_ops.bench.federated import (
    ENGINE,
    FEDERATED_PARAMS,
    SOURCE_CLASS,
    _attackers,
    _give_source_to_attackers,
    federated_markdown,
    run_federated_benchmark,
)
from unlearn_ops.federated.data import FederatedData, load_mnist_standin, make_federated_data


def test_the_federated_section_measures_attack_detection_and_both_removals() -> None:
    # 4 rounds of 3 epochs, 6 clients: the attackers land in both groups, so FedEraser
    # (every 2nd round retained, 2 calibration epochs, then 1 finishing round) has clients
    # to calibrate in each; with 4 clients one group empties and it does no work at all.
    params = FEDERATED_PARAMS.model_copy(update={"rounds": 4, "local_epochs": 3})
    results = run_federated_benchmark(seeds=(0,), num_clients=6, alpha=1.0, params=params)
    assert results["engine"] == ENGINE
    (row,) = results["seeds"]
    assert len(row["attackers"]) == 2
    assert row["exact"]["bit_equal_to_oracle"] is True  # exact removal = the oracle, bit for bit
    for request in row["exact"]["requests"]:
        assert request["client_rounds"] < request["full_retrain_client_rounds"]
    assert row["federaser"]["provisional"] is True
    assert 0 < row["federaser"]["client_epochs"] < row["federaser"]["retrain_client_epochs"]
    assert results["targets"]["exact_bit_equal"]["met"] is True
    table = federated_markdown(results)
    assert ENGINE in table
    assert "| 0 |" in table
    assert "exact_cost_ratio_max" in table


def test_the_attackers_are_given_their_share_of_the_source_class_and_nothing_else_moves() -> None:
    features, labels = load_mnist_standin()
    data = make_federated_data(features, labels, num_clients=10, alpha=3.0, seed=7)
    attackers = _attackers(data, 2)
    moved = _give_source_to_attackers(data, attackers, 0.7, seed=7)

    def source_rows(d: FederatedData, ids: list[str]) -> int:
        return sum(int(np.sum(c.labels == SOURCE_CLASS)) for c in d.clients if c.client_id in ids)

    everyone = [c.client_id for c in data.clients]
    assert source_rows(moved, everyone) == source_rows(data, everyone)
    before = source_rows(data, attackers) / source_rows(data, everyone)
    after = source_rows(moved, attackers) / source_rows(moved, everyone)
    assert before < 0.7 <= after + 0.01
    for old, new in zip(data.clients, moved.clients, strict=True):
        other = old.labels != SOURCE_CLASS
        assert np.array_equal(
            np.bincount(old.labels[other], minlength=10),
            np.bincount(new.labels[new.labels != SOURCE_CLASS], minlength=10),
        )
    assert _give_source_to_attackers(moved, attackers, 0.5, seed=7) is moved

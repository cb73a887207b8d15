"""The monolithic training helper: one model on a whole table, deterministic, SISA's recipe."""

from __future__ import annotations

import pytest

from tests.conftest import columns_of
from unlearn_ops.approx.monolithic import (
    monolithic_epochs,
    monolithic_gradient_steps,
    train_monolithic,
)
from unlearn_ops.params import Params
from unlearn_ops.sisa.datasets import Dataset
from unlearn_ops.sisa.training import ShardColumns, weights_digest


@pytest.fixture(scope="module")
def columns(synthetic_dataset: Dataset) -> ShardColumns:
    return columns_of(synthetic_dataset)


def test_same_seed_gives_the_same_weights_and_another_seed_others(
    synthetic_dataset: Dataset, columns: ShardColumns, tiny_params: Params
) -> None:
    table = synthetic_dataset.frame
    first = train_monolithic(table, columns, tiny_params, seed=5, epochs=2)
    again = train_monolithic(table, columns, tiny_params, seed=5, epochs=2)
    other = train_monolithic(table, columns, tiny_params, seed=6, epochs=2)
    assert weights_digest(first.state_dict()) == weights_digest(again.state_dict())
    assert weights_digest(first.state_dict()) != weights_digest(other.state_dict())
    assert not first.training


def test_it_learns_the_table(
    synthetic_dataset: Dataset, columns: ShardColumns, tiny_params: Params
) -> None:
    import torch

    table = synthetic_dataset.frame
    model = train_monolithic(table, columns, tiny_params, seed=0)
    features = torch.tensor(table[list(columns.feature_columns)].to_numpy(dtype="float32"))
    with torch.no_grad():
        predicted = model(features).argmax(dim=1).numpy()
    assert (predicted == table[columns.label_column].to_numpy()).mean() > 0.9


def test_the_budget_matches_the_sisa_schedule(tiny_params: Params) -> None:
    # E=2, R=3: the schedule runs 2 x (1 + 2 + 3) / 3 = 4 epochs' worth of examples.
    assert monolithic_epochs(tiny_params) == 4
    assert monolithic_gradient_steps(300, tiny_params) == 19 * 4
    assert monolithic_gradient_steps(300, tiny_params, epochs=1) == 19

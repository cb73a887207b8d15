"""Every registered method: deterministic on the CPU, and one clear error for bad options."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from torch import nn

from unlearn_ops.approx.base import UnlearnData, method_defaults, registered_methods, run_method
from unlearn_ops.errors import UnknownMethodError, UnlearnOpsError
from unlearn_ops.sisa.training import weights_digest

METHODS = ["finetune", "neggrad+", "salun", "scrub", "ssd"]
# Few steps each: determinism, not quality, is under test.
QUICK = {
    "finetune": {"epochs": 1},
    "neggrad+": {"epochs": 2},
    "salun": {"epochs": 2},
    "scrub": {"epochs": 1, "msteps": 1},
    "ssd": {},
}


def digest(model: nn.Module) -> str:
    return weights_digest(model.state_dict())


def test_the_built_in_methods_are_registered() -> None:
    assert registered_methods() == METHODS


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_gives_the_same_weights(
    name: str, fresh_model: Callable[[], nn.Module], split: UnlearnData
) -> None:
    first = run_method(name, fresh_model(), split, QUICK[name], seed=7)
    again = run_method(name, fresh_model(), split, QUICK[name], seed=7)
    assert digest(first.model) == digest(again.model)
    assert digest(first.model) != digest(fresh_model())
    if name != "ssd":  # SSD draws nothing at random
        other = run_method(name, fresh_model(), split, QUICK[name], seed=8)
        assert digest(other.model) != digest(first.model)


def test_an_unknown_method_names_the_registered_ones(
    fresh_model: Callable[[], nn.Module], split: UnlearnData
) -> None:
    with pytest.raises(UnknownMethodError, match=r"'salun2'.*finetune, neggrad\+, salun"):
        run_method("salun2", fresh_model(), split)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("scrub", {"learning_rate": 0.1}, r"unknown options \['learning_rate'\]; it takes"),
        ("salun", {"threshold": 1.5}, r"threshold=1.5 must lie in \(0, 1\]"),
        ("neggrad+", {"lr": -0.1}, r"lr=-0.1 must be above 0"),
        ("ssd", {"alpha": "ten"}, r"alpha='ten' is not a number"),
    ],
)
def test_a_bad_option_is_one_clear_error_and_changes_nothing(
    name: str,
    options: dict[str, object],
    message: str,
    fresh_model: Callable[[], nn.Module],
    split: UnlearnData,
) -> None:
    model = fresh_model()
    before = digest(model)
    with pytest.raises(UnknownMethodError, match=message) as caught:
        run_method(name, model, split, options)
    assert isinstance(caught.value, UnlearnOpsError)
    assert str(caught.value).startswith(f"unlearning method {name!r}: ")
    assert digest(model) == before


def test_defaults_are_the_papers() -> None:
    assert method_defaults("ssd") == {"alpha": 10.0, "lambda": 1.0, "batch_size": 64}
    assert method_defaults("salun")["threshold"] == 0.5
    scrub = method_defaults("scrub")
    assert (scrub["alpha"], scrub["gamma"], scrub["kd_t"], scrub["msteps"]) == (
        0.001,
        0.99,
        4.0,
        2,
    )

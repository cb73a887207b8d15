"""SCRUB's max steps push the student away from the teacher on the forgotten records."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tests.approx.conftest import mean_loss
from unlearn_ops.approx.base import UnlearnData, run_method
from unlearn_ops.approx.scrub import distill_kl

# KL(teacher || student) has zero gradient while the student equals its teacher, so max
# steps act once min steps have moved it: enough epochs and a step size that moves it.
OPTIONS = {"epochs": 5, "lr": 0.2}


def test_max_steps_raise_the_forget_loss(
    fresh_model: Callable[[], nn.Module], split: UnlearnData
) -> None:
    before = mean_loss(fresh_model(), split.forgotten_x, split.forgotten_y)
    teacher = fresh_model()
    with_max = run_method("scrub", fresh_model(), split, {**OPTIONS, "msteps": 3}, seed=0)
    without = run_method("scrub", fresh_model(), split, {**OPTIONS, "msteps": 0}, seed=0)
    forget_with = mean_loss(with_max.model, split.forgotten_x, split.forgotten_y)
    forget_without = mean_loss(without.model, split.forgotten_x, split.forgotten_y)
    assert forget_with > before
    assert forget_with > forget_without
    with torch.no_grad():
        target = teacher(split.forgotten_x)
        kl_with = float(distill_kl(with_max.model(split.forgotten_x), target, 4.0))
        kl_without = float(distill_kl(without.model(split.forgotten_x), target, 4.0))
    assert kl_with > 2 * kl_without
    assert with_max.details["max_steps"] == 3 * 2  # 30 records, forget batches of 16
    assert without.details["max_steps"] == 0
    assert with_max.details["min_steps"] == without.details["min_steps"] == 5 * 5
    assert with_max.gradient_steps == 6 + 25


def test_min_steps_keep_the_retained_loss_bounded(
    fresh_model: Callable[[], nn.Module], split: UnlearnData
) -> None:
    before = mean_loss(fresh_model(), split.retained_x, split.retained_y)
    outcome = run_method("scrub", fresh_model(), split, {**OPTIONS, "msteps": 3}, seed=0)
    assert mean_loss(outcome.model, split.retained_x, split.retained_y) < 2 * before + 0.1

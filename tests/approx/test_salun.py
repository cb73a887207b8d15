"""SalUn updates only the weights of its saliency mask, and forgets through random labels."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tests.approx.conftest import mean_loss
from unlearn_ops.approx.base import UnlearnData, run_method
from unlearn_ops.approx.salun import saliency_masks


def test_only_masked_weights_move(fresh_model: Callable[[], nn.Module], split: UnlearnData) -> None:
    before = fresh_model()
    masks = saliency_masks(fresh_model(), split.forgotten_x, split.forgotten_y, 0.5)
    outcome = run_method("salun", fresh_model(), split, {"epochs": 5}, seed=0)
    after = dict(outcome.model.named_parameters())
    moved = 0
    for name, old in before.named_parameters():
        new, mask = after[name].detach(), masks[name]
        assert torch.equal(new[~mask], old.detach()[~mask]), name
        moved += int((new[mask] != old.detach()[mask]).sum())
    masked = sum(int(m.sum()) for m in masks.values())
    assert outcome.details["masked"] == masked
    assert moved > masked // 2
    # Half the weights by saliency (ties at the cut kept).
    assert 0.5 <= masked / outcome.details["parameters"] < 0.55


def test_random_labels_raise_the_forget_loss(
    fresh_model: Callable[[], nn.Module], split: UnlearnData
) -> None:
    before = mean_loss(fresh_model(), split.forgotten_x, split.forgotten_y)
    outcome = run_method("salun", fresh_model(), split, {"epochs": 10}, seed=0)
    assert mean_loss(outcome.model, split.forgotten_x, split.forgotten_y) > before

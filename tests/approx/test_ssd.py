"""SSD dampens exactly the parameters above its importance threshold and leaves the rest."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from unlearn_ops.approx.base import UnlearnData, run_method
from unlearn_ops.approx.ssd import dampening_masks, fisher_importances


def test_only_parameters_above_the_threshold_change(
    fresh_model: Callable[[], nn.Module], split: UnlearnData
) -> None:
    before = fresh_model()
    full_x = torch.cat([split.retained_x, split.forgotten_x])
    full_y = torch.cat([split.retained_y, split.forgotten_y])
    forget = fisher_importances(before, split.forgotten_x, split.forgotten_y, 64)
    full = fisher_importances(before, full_x, full_y, 64)
    masks = dampening_masks(forget, full, alpha=10.0)
    outcome = run_method("ssd", fresh_model(), split)
    after = dict(outcome.model.named_parameters())
    changed = 0
    for name, old in before.named_parameters():
        new, mask = after[name].detach(), masks[name]
        assert torch.equal(new[~mask], old.detach()[~mask]), name
        # Dampened: shrunk toward 0 by lambda * I_D / I_f < 1 / alpha, never grown or flipped.
        shrunk = new[mask].abs() < old.detach()[mask].abs()
        assert bool(shrunk.all()), name
        assert bool((new[mask] * old.detach()[mask] >= 0).all()), name
        changed += int(mask.sum())
    assert changed > 0
    assert outcome.details["dampened"] == changed
    assert outcome.gradient_steps == 0
    # Two honest Fisher passes: 30 forgotten records in 1 batch, 300 records in 5 batches.
    assert outcome.details["fisher_batches"] == 1 + 5
    assert outcome.details["fisher_examples"] == 30 + 300


def test_a_higher_threshold_selects_fewer_parameters(
    fresh_model: Callable[[], nn.Module], split: UnlearnData
) -> None:
    loose = run_method("ssd", fresh_model(), split, {"alpha": 2.0})
    strict = run_method("ssd", fresh_model(), split, {"alpha": 50.0})
    assert loose.details["dampened"] > strict.details["dampened"]

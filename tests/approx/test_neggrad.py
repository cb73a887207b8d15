"""NegGrad+ raises the forget loss while the retained loss stays bounded."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tests.approx.conftest import mean_loss
from unlearn_ops.approx.base import UnlearnData, run_method


def test_forget_loss_rises_and_retained_loss_stays_bounded(
    fresh_model: Callable[[], nn.Module], split: UnlearnData
) -> None:
    model = fresh_model()
    forget_before = mean_loss(model, split.forgotten_x, split.forgotten_y)
    retain_before = mean_loss(model, split.retained_x, split.retained_y)
    outcome = run_method("neggrad+", model, split, {"alpha": 0.5, "epochs": 20}, seed=0)
    forget_after = mean_loss(outcome.model, split.forgotten_x, split.forgotten_y)
    retain_after = mean_loss(outcome.model, split.retained_x, split.retained_y)
    assert forget_after > forget_before + 0.1
    assert retain_after < retain_before + 0.5
    assert forget_after - forget_before > retain_after - retain_before
    assert outcome.gradient_steps == 20 * 1  # 30 records, batches of 32


def test_the_ascent_term_is_what_forgets(
    fresh_model: Callable[[], nn.Module], split: UnlearnData
) -> None:
    # alpha = 1 drops the ascent: plain fine-tuning on retained batches.
    ascent = run_method("neggrad+", fresh_model(), split, {"alpha": 0.5, "epochs": 20})
    descent = run_method("neggrad+", fresh_model(), split, {"alpha": 1.0, "epochs": 20})
    assert mean_loss(ascent.model, split.forgotten_x, split.forgotten_y) > mean_loss(
        descent.model, split.forgotten_x, split.forgotten_y
    )

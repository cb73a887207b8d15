"""NegGrad+: descend on the retained data and ascend on the forgotten data, weighted.

Kurmanji et al., "Towards Unbounded Machine Unlearning" (NeurIPS 2023, arXiv 2302.09880),
the NegGrad+ baseline: each step minimises
``alpha * CE(retained batch) - (1 - alpha) * CE(forgotten batch)``. Plain NegGrad (ascent
alone) destroys the model; the retained term keeps it useful, and with `alpha` tuned it is
the baseline to beat (Deep Unlearn, arXiv 2410.01276).

Schedule: an epoch is one seeded pass over the forgotten records, each forgotten batch paired
with the next retained batch of a seeded endless pass over the retained records, so the cost
scales with the forget set, not with the whole training set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from unlearn_ops.approx.base import UnlearnData, UnlearnOutcome, register_method
from unlearn_ops.approx.options import check_fraction, check_positive
from unlearn_ops.approx.sampling import paired_batches

if TYPE_CHECKING:
    from torch import nn

__all__ = ["NEGGRAD_DEFAULTS", "neggrad_plus"]

NEGGRAD_DEFAULTS: dict[str, Any] = {
    "alpha": 0.99,
    "epochs": 5,
    "lr": 0.01,
    "momentum": 0.9,
    "batch_size": 32,
}


def neggrad_plus(
    model: nn.Module, data: UnlearnData, options: Mapping[str, Any], seed: int
) -> UnlearnOutcome:
    """Weighted descent on retained and ascent on forgotten batches (see the module docstring).

    Options: `alpha` (weight of the retained loss, in (0, 1]), `epochs` (passes over the
    forgotten records), `lr`, `momentum` (SGD), `batch_size` (both loaders).
    """
    import torch

    alpha = check_fraction("neggrad+", options, "alpha")
    lr = check_positive("neggrad+", options, "lr")
    batch = int(check_positive("neggrad+", options, "batch_size"))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(options["momentum"]))
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = 0
    forget_loss = 0.0
    model.train()
    for rows, keep in paired_batches(model, data, batch, int(options["epochs"]), generator, seed):
        optimizer.zero_grad()
        ascent = loss_fn(model(data.forgotten_x[rows]), data.forgotten_y[rows])
        descent = loss_fn(model(data.retained_x[keep]), data.retained_y[keep])
        (alpha * descent - (1.0 - alpha) * ascent).backward()
        optimizer.step()
        forget_loss = float(ascent.detach())
        steps += 1
    model.eval()
    return UnlearnOutcome(
        model=model, gradient_steps=steps, details={"last_forget_loss": forget_loss}
    )


register_method("neggrad+", neggrad_plus, NEGGRAD_DEFAULTS)

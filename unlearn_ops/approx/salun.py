"""SalUn: random labels on the forgotten data, learned only by the salient weights.

Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency"
(ICLR 2024, arXiv 2310.12508), sec. 4. The saliency of a weight is ``|grad of the forget
loss|`` (the gradient of CE summed over the forgotten records, at the original model); the
mask keeps the `threshold` share of weights with the largest saliency, over the whole model
(the paper's default: half). Then random-label fine-tuning (the forgotten records with labels
drawn uniformly from the classes, together with retained records) updates the masked
weights only: gradients are multiplied by the mask, with no weight decay, so weights outside
it stay bit-identical.

Schedule: an epoch is one seeded pass over the forgotten records, each random-label batch
paired with the next retained batch (the paper concatenates the two sets; pairing keeps the
cost proportional to the forget set).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from unlearn_ops.approx.base import UnlearnData, UnlearnOutcome, register_method
from unlearn_ops.approx.options import check_fraction, check_positive
from unlearn_ops.approx.sampling import paired_batches

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["SALUN_DEFAULTS", "saliency_masks", "salun"]

SALUN_DEFAULTS: dict[str, Any] = {
    "threshold": 0.5,
    "epochs": 10,
    "lr": 0.01,
    "momentum": 0.9,
    "batch_size": 32,
}


def saliency_masks(
    model: nn.Module, features: torch.Tensor, labels: torch.Tensor, threshold: float
) -> dict[str, torch.Tensor]:
    """The top-`threshold` share of weights by ``|d CE_forget / d w|``, over the whole model.

    Ties at the cut are all kept (the mask may hold a few more than the share).
    """
    import torch

    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(features), labels, reduction="sum")
    loss.backward()  # type: ignore[no-untyped-call]
    saliency = {
        n: (p.grad.detach().abs() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
    }
    model.zero_grad()
    flat = torch.cat([s.reshape(-1) for s in saliency.values()])
    keep = max(1, round(threshold * flat.numel()))
    cut = torch.topk(flat, keep).values.min()
    return {n: s >= cut for n, s in saliency.items()}


def salun(
    model: nn.Module, data: UnlearnData, options: Mapping[str, Any], seed: int
) -> UnlearnOutcome:
    """Saliency mask, then masked random-label fine-tuning (module docstring).

    Options: `threshold` (share of weights in the mask, (0, 1]), `epochs` (passes over the
    forgotten records), `lr`, `momentum` (SGD), `batch_size`.

    Details: `masked` (weights in the mask) and `parameters` (weights in all).
    """
    import torch

    threshold = check_fraction("salun", options, "threshold")
    lr = check_positive("salun", options, "lr")
    batch = int(check_positive("salun", options, "batch_size"))
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    masks = saliency_masks(model, data.forgotten_x, data.forgotten_y, threshold)
    random_labels = torch.randint(
        0, data.num_classes, data.forgotten_y.shape, generator=generator, dtype=torch.int64
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(options["momentum"]))
    loss_fn = torch.nn.CrossEntropyLoss()
    parameters = dict(model.named_parameters())
    steps = 0
    model.train()
    for rows, keep in paired_batches(model, data, batch, int(options["epochs"]), generator, seed):
        x = torch.cat([data.forgotten_x[rows], data.retained_x[keep]])
        y = torch.cat([random_labels[rows], data.retained_y[keep]])
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        for name, parameter in parameters.items():
            if parameter.grad is not None:
                parameter.grad.mul_(masks[name])
        optimizer.step()
        steps += 1
    model.eval()
    return UnlearnOutcome(
        model=model,
        gradient_steps=steps,
        details={
            "masked": sum(int(m.sum()) for m in masks.values()),
            "parameters": sum(m.numel() for m in masks.values()),
        },
    )


register_method("salun", salun, SALUN_DEFAULTS)

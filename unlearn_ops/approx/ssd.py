"""SSD, selective synaptic dampening: shrink the weights the forgotten data alone relies on.

Foster et al., "Fast Machine Unlearning Without Retraining Through Selective Synaptic
Dampening" (AAAI 2024, arXiv 2308.07707), sec. 3. No training: the diagonal Fisher
importance ``I = E[grad(CE)^2]`` is computed over the forgotten records (``I_f``) and over
the whole training data (``I_D``, retained and forgotten); every parameter with
``I_f > alpha * I_D`` is multiplied by ``beta = min(lambda * I_D / I_f, 1)``, the others
are left bit-identical. Defaults are the paper's (``alpha = 10``, ``lambda = 1``).

Importances follow the paper's code: per batch, the squared gradient of the batch's mean
loss, averaged over batches. SSD takes no gradient step, but it does run two backward
passes over data: they are counted in the outcome's details (`fisher_batches`,
`fisher_examples`), not hidden behind "0 steps".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from unlearn_ops.approx.base import UnlearnData, UnlearnOutcome, register_method
from unlearn_ops.approx.options import check_positive

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["SSD_DEFAULTS", "dampening_masks", "fisher_importances", "selective_dampening"]

SSD_DEFAULTS: dict[str, Any] = {"alpha": 10.0, "lambda": 1.0, "batch_size": 64}


def fisher_importances(
    model: nn.Module, features: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher importance of every parameter: mean over batches of grad(CE)^2.

    Batches are taken in row order (no randomness: the importances are a pure function of
    the model and the data).
    """
    import torch

    importances = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    loss_fn = torch.nn.CrossEntropyLoss()
    model.eval()
    count = 0
    for start in range(0, len(labels), batch_size):
        model.zero_grad()
        loss_fn(
            model(features[start : start + batch_size]), labels[start : start + batch_size]
        ).backward()
        for name, parameter in model.named_parameters():
            if parameter.grad is not None:
                importances[name] += parameter.grad.detach() ** 2
        count += 1
    model.zero_grad()
    return {n: v / max(count, 1) for n, v in importances.items()}


def dampening_masks(
    forget: Mapping[str, torch.Tensor], full: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """Which entries SSD dampens: ``I_f > alpha * I_D``, per parameter."""
    return {name: forget[name] > alpha * full[name] for name in forget}


def selective_dampening(
    model: nn.Module, data: UnlearnData, options: Mapping[str, Any], seed: int
) -> UnlearnOutcome:
    """Dampen the parameters specialised to the forgotten data (module docstring).

    Options: `alpha` (selection threshold), `lambda` (dampening constant), `batch_size` (of
    the Fisher passes). `seed` is unused: SSD draws nothing at random.

    Details: `dampened` (entries changed), `parameters` (entries in all), `fisher_batches`
    and `fisher_examples` (the backward passes run).
    """
    import torch

    del seed  # deterministic by construction
    alpha = check_positive("ssd", options, "alpha")
    dampening = check_positive("ssd", options, "lambda")
    batch = int(check_positive("ssd", options, "batch_size"))
    full_x = torch.cat([data.retained_x, data.forgotten_x])
    full_y = torch.cat([data.retained_y, data.forgotten_y])
    forget = fisher_importances(model, data.forgotten_x, data.forgotten_y, batch)
    full = fisher_importances(model, full_x, full_y, batch)
    masks = dampening_masks(forget, full, alpha)
    dampened = total = 0
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            mask = masks[name]
            # I_f > alpha * I_D >= 0 on the mask, so the division is safe there.
            factor = (dampening * full[name][mask] / forget[name][mask]).clamp(max=1.0)
            parameter[mask] = parameter[mask] * factor
            dampened += int(mask.sum())
            total += mask.numel()
    batches = -(-len(data.forgotten_y) // batch) + -(-len(full_y) // batch)
    return UnlearnOutcome(
        model=model,
        gradient_steps=0,
        details={
            "dampened": dampened,
            "parameters": total,
            "fisher_batches": batches,
            "fisher_examples": len(data.forgotten_y) + len(full_y),
        },
    )


register_method("ssd", selective_dampening, SSD_DEFAULTS)

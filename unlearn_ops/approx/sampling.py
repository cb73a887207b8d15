"""Seeded batches and seeded dropout for the approximate methods (their only randomness).

Every method draws its batch orders from one `torch.Generator` seeded by the caller's seed,
and seeds each :class:`~unlearn_ops.sisa.layers.SeededDropout` of the model per epoch, so a
method run twice on the CPU gives bit-identical weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["batches", "endless_batches", "seed_dropout"]


def batches(count: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Row indices of one seeded pass over `count` rows, in batches of `batch_size`."""
    import torch

    order = torch.randperm(count, generator=generator)
    for start in range(0, count, batch_size):
        yield order[start : start + batch_size]


def endless_batches(
    count: int, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Seeded passes over `count` rows one after another, for pairing with another loader."""
    while True:
        yield from batches(count, batch_size, generator)


def seed_dropout(model: torch.nn.Module, seed: int) -> None:
    """Give every SeededDropout of `model` its own generator (call once per epoch)."""
    import torch

    from unlearn_ops.sisa.layers import SeededDropout

    dropouts = [m for m in model.modules() if isinstance(m, SeededDropout)]
    for offset, module in enumerate(dropouts):
        module.generator = torch.Generator().manual_seed(seed + offset)

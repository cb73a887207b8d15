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

    from unlearn_ops.approx.base import UnlearnData

__all__ = ["batches", "endless_batches", "paired_batches", "seed_dropout"]


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


def paired_batches(
    model: torch.nn.Module,
    data: UnlearnData,
    batch_size: int,
    epochs: int,
    generator: torch.Generator,
    seed: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`epochs` seeded passes over the forgotten rows, each batch paired with retained rows.

    Seeds the model's dropout at the start of each epoch (``seed * 1000 + epoch``); the
    retained rows cycle through seeded passes of their own, drawn from the same generator.
    """
    pool = endless_batches(len(data.retained_y), batch_size, generator)
    for epoch in range(epochs):
        seed_dropout(model, seed * 1000 + epoch)
        for rows in batches(len(data.forgotten_y), batch_size, generator):
            yield rows, next(pool)


def seed_dropout(model: torch.nn.Module, seed: int) -> None:
    """Give every SeededDropout of `model` its own generator (call once per epoch)."""
    import torch

    from unlearn_ops.sisa.layers import SeededDropout

    dropouts = [m for m in model.modules() if isinstance(m, SeededDropout)]
    for offset, module in enumerate(dropouts):
        module.generator = torch.Generator().manual_seed(seed + offset)

"""Torch layers of unlearn-ops (imported only where torch is needed anyway)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SeededDropout"]


class SeededDropout(nn.Module):
    """Dropout that draws from its own generator, never from torch's global RNG.

    Shards train in parallel threads and torch's global RNG is shared between them, so
    `nn.Dropout` would make a shard's weights depend on thread timing. Before every epoch,
    training gives each SeededDropout a generator seeded from (seed, shard, stage, epoch).
    Custom model factories that need dropout should use this layer.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate
        self.generator: torch.Generator | None = None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Zero a seeded random share `rate` of the inputs in training; identity otherwise."""
        if not self.training or self.rate == 0.0:
            return inputs
        if self.generator is None:
            raise RuntimeError("SeededDropout trained without a generator: seed it per epoch")
        keep = torch.rand(inputs.shape, generator=self.generator, device=inputs.device)
        return inputs * (keep >= self.rate) / (1.0 - self.rate)

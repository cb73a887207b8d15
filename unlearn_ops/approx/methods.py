"""Built-in approximate unlearning methods; importing this module registers them.

The fine-tune baseline lives here; each other method has its own module, imported at the
end (NegGrad+, SCRUB, SSD, SalUn): see docs/APPROXIMATE.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from unlearn_ops.approx.base import UnlearnData, UnlearnOutcome, register_method

if TYPE_CHECKING:
    from torch import nn

__all__ = ["finetune"]


def finetune(
    model: nn.Module, data: UnlearnData, options: Mapping[str, Any], seed: int
) -> UnlearnOutcome:
    """Fine-tune on the retained data only (the baseline every paper compares against).

    The model forgets only through catastrophic forgetting; it is the weak baseline that the
    per-example membership audit should flag.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=float(options["lr"]), momentum=float(options["momentum"])
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    batch = int(options["batch_size"])
    steps = 0
    model.train()
    for _ in range(int(options["epochs"])):
        order = torch.randperm(len(data.retained_y), generator=generator)
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            optimizer.zero_grad()
            loss_fn(model(data.retained_x[rows]), data.retained_y[rows]).backward()
            optimizer.step()
            steps += 1
    model.eval()
    return UnlearnOutcome(model=model, gradient_steps=steps)


register_method("finetune", finetune, {"epochs": 5, "lr": 0.01, "momentum": 0.9, "batch_size": 64})

# The other methods register themselves on import.
from unlearn_ops.approx import neggrad, salun, scrub, ssd  # noqa: E402

__all__ += ["neggrad", "salun", "scrub", "ssd"]

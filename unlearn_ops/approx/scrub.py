"""SCRUB: a student leaves its teacher on the forgotten data and stays with it on the rest.

Kurmanji et al., "Towards Unbounded Machine Unlearning" (NeurIPS 2023, arXiv 2302.09880),
sec. 3. The teacher is a frozen copy of the original model; the student starts from it.
Each epoch, while ``epoch < msteps``, a *max step* pass over the forgotten records maximises
``KL(teacher || student)`` on them; then a *min step* pass over the retained records
minimises ``gamma * CE + alpha * KL(teacher || student)``. KL is on temperature-`kd_t`
softmaxes, scaled by ``kd_t^2`` (the paper's DistillKL). Dropping the max steps leaves
plain distillation, which does not forget: they are the method.

Defaults are the paper's code (``alpha=0.001, gamma=0.99, kd_T=4, msteps=2``, SGD with
momentum 0.9, forget batch 16); the learning rate and epochs are the ones to tune.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from unlearn_ops.approx.base import UnlearnData, UnlearnOutcome, register_method
from unlearn_ops.approx.options import check_positive
from unlearn_ops.approx.sampling import batches, seed_dropout

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["SCRUB_DEFAULTS", "distill_kl", "scrub"]

SCRUB_DEFAULTS: dict[str, Any] = {
    "epochs": 3,
    "msteps": 2,
    "lr": 0.0005,
    "momentum": 0.9,
    "alpha": 0.001,
    "gamma": 0.99,
    "kd_t": 4.0,
    "batch_size": 64,
    "forget_batch_size": 16,
}


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(teacher/T) || softmax(student/T)) * T^2``, averaged over the batch."""
    import torch.nn.functional as functional

    log_student = functional.log_softmax(student / temperature, dim=1)
    target = functional.softmax(teacher / temperature, dim=1)
    kl = functional.kl_div(log_student, target, reduction="sum")
    return kl * temperature**2 / student.shape[0]


def scrub(
    model: nn.Module, data: UnlearnData, options: Mapping[str, Any], seed: int
) -> UnlearnOutcome:
    """Max steps on the forgotten records, then min steps on the retained (module docstring).

    Options: `epochs`, `msteps` (epochs that start with a max step pass), `lr`, `momentum`,
    `alpha` (KL weight on retained), `gamma` (CE weight on retained), `kd_t` (temperature),
    `batch_size` (retained), `forget_batch_size`.

    Details: `max_steps` and `min_steps` taken, and `forget_kl` after the last max pass.
    """
    import torch

    lr = check_positive("scrub", options, "lr")
    temperature = check_positive("scrub", options, "kd_t")
    batch = int(check_positive("scrub", options, "batch_size"))
    forget_batch = int(check_positive("scrub", options, "forget_batch_size"))
    alpha, gamma = float(options["alpha"]), float(options["gamma"])
    teacher = copy.deepcopy(model).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(options["momentum"]))
    loss_fn = torch.nn.CrossEntropyLoss()
    max_steps = min_steps = 0
    forget_kl = 0.0
    for epoch in range(int(options["epochs"])):
        model.train()
        seed_dropout(model, seed * 1000 + epoch)
        if epoch < int(options["msteps"]):
            for rows in batches(len(data.forgotten_y), forget_batch, generator):
                x = data.forgotten_x[rows]
                with torch.no_grad():
                    target = teacher(x)
                optimizer.zero_grad()
                divergence = distill_kl(model(x), target, temperature)
                (-divergence).backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                forget_kl = float(divergence.detach())
                max_steps += 1
        for rows in batches(len(data.retained_y), batch, generator):
            x = data.retained_x[rows]
            with torch.no_grad():
                target = teacher(x)
            optimizer.zero_grad()
            logits = model(x)
            loss = gamma * loss_fn(logits, data.retained_y[rows])
            (loss + alpha * distill_kl(logits, target, temperature)).backward()
            optimizer.step()
            min_steps += 1
    model.eval()
    return UnlearnOutcome(
        model=model,
        gradient_steps=max_steps + min_steps,
        details={"max_steps": max_steps, "min_steps": min_steps, "forget_kl": forget_kl},
    )


register_method("scrub", scrub, SCRUB_DEFAULTS)

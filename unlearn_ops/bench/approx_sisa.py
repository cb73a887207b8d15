"""Exact SISA's row in the approximate-unlearning tables: the same metrics, at its own cost.

Per seed, a SISA ensemble with the workload's S and R is trained once on the benchmark's
training records (the same held-out split), then, for each forget set, a copy forgets the
records exactly: only the shards holding them retrain, each from its last checkpoint before
the first slice that held one. Every forget is certified (the retrained shards trained again
from scratch without the records compare bit for bit). The ensemble is scored through
:class:`EnsembleLogits` by the same functions as the monolithic models; in its audit the OUT
references are the other seeds' forgotten ensembles, each of which *is* a SISA ensemble
trained without the records.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unlearn_ops.params import Params
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.datasets import BUILTIN_DATASETS
from unlearn_ops.sisa.ensemble import SisaEnsemble
from unlearn_ops.sisa.sharding import SLICE_COLUMN
from unlearn_ops.sisa.verification import certify_exactness

__all__ = ["EnsembleLogits", "SisaForget", "SisaSeeds", "stage_steps"]

_SETTINGS = Settings(device="cpu", torch_threads=1, max_parallel_shards=1)


class EnsembleLogits(torch.nn.Module):
    """A SISA ensemble as a classifier module: the log of its aggregated probabilities.

    Softmax of these logits gives the ensemble's probabilities back, so accuracy, phi and
    every audit read the served ensemble exactly as they read a monolithic model.
    """

    def __init__(self, ensemble: SisaEnsemble) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the ensemble (probabilities floored at 1e-12)."""
        scores = self.ensemble.predict_proba(features.detach().cpu().numpy())
        return torch.from_numpy(np.log(np.clip(scores, 1e-12, None)))


def stage_steps(table: Sequence[int] | np.ndarray, first_stage: int, params: Params) -> int:
    """Optimizer steps of training one shard's stages `first_stage`..R-1 (slices per record).

    Stage r trains `epochs_per_stage` epochs over the records of slices 0..r, in batches of
    `batch_size`: the count :func:`unlearn_ops.sisa.training.train_shard` runs.
    """
    slices = np.asarray(table)
    batch, epochs = params.training.batch_size, params.training.epochs_per_stage
    return sum(
        epochs * math.ceil(int((slices <= stage).sum()) / batch)
        for stage in range(first_stage, params.sisa.slices)
    )


@dataclass(frozen=True)
class SisaForget:
    """One seed's ensemble before and after an exact forget, and what the forget cost."""

    before: EnsembleLogits
    after: EnsembleLogits
    steps: int
    seconds: float
    certified: bool


@dataclass(frozen=True)
class SisaSeeds:
    """One trained SISA ensemble per seed, kept under `scratch` (the caller removes it)."""

    scratch: Path
    params: tuple[Params, ...]

    @classmethod
    def train(
        cls, dataset: str, params: Params, seeds: int, scratch: Path, test_ids: Sequence[str]
    ) -> SisaSeeds:
        """Prepare the shards once (the held-out split of `params.seed`), train per seed.

        Raises:
            RuntimeError: the ensemble's held-out records are not `test_ids` (the split of
                the rest of the benchmark), so its rows would not be comparable.
        """
        prepared = SisaEnsemble(scratch / "prepared", params, _SETTINGS)
        prepared.prepare(BUILTIN_DATASETS[dataset]())
        columns = prepared.columns()
        held_out = sorted(map(str, prepared.read_holdout()[columns.id_column]))
        if held_out != sorted(map(str, test_ids)):
            raise RuntimeError("the SISA ensemble's held-out split differs from the benchmark's")
        seeded = tuple(params.model_copy(update={"seed": s}) for s in range(seeds))
        for seed, seed_params in enumerate(seeded):
            root = scratch / f"seed-{seed}"
            shutil.copytree(prepared.root, root)
            SisaEnsemble(root, seed_params, _SETTINGS).train()
        return cls(scratch, seeded)

    def forget(self, record_ids: Sequence[object], label: str) -> list[SisaForget]:
        """Each seed's ensemble, copied, forgets `record_ids` exactly and is certified."""
        runs = []
        for seed, params in enumerate(self.params):
            trained = self.scratch / f"seed-{seed}"
            root = self.scratch / f"{label}-{seed}"
            shutil.copytree(trained, root)
            ensemble = SisaEnsemble(root, params, _SETTINGS)
            started = time.perf_counter()
            report = ensemble.forget(record_ids)
            seconds = time.perf_counter() - started
            steps = sum(
                stage_steps(
                    ensemble.read_shard(model.shard_id)[SLICE_COLUMN].to_numpy(),
                    model.resumed_from_stage,
                    params,
                )
                for model in report.training.models
            )
            certificate = certify_exactness(ensemble, report.plan.shard_ids)
            before = EnsembleLogits(SisaEnsemble(trained, params, _SETTINGS))
            runs.append(
                SisaForget(before, EnsembleLogits(ensemble), steps, seconds, certificate.passed)
            )
        return runs

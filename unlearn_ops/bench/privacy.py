"""The privacy rows of `make bench`: the membership audit on an exact and on a weak forget.

On one workload (MNIST-5k, the default small MLP, S=4), in one run:

- **exact SISA forget**: 100 random training records forgotten (their shards retrained
  from scratch); the audit against the parent ensemble. Target: at most 3 of 100 flagged
  at alpha = 0.01, with the positive control's TPR at 1% FPR reported beside it.
- **weak forget** (the baseline an audit must catch): one monolithic model trained on all
  the training records, then fine-tuned a few steps on the retained records only. Its OUT
  references are monolithic models retrained on the retained records with other seeds (the
  shard models are no references for a model trained on S times more data). Target: `fail`.
- **audit time**: one audit of the exact forget, warm (models in memory, the second run).

Every figure comes with its 95% bootstrap interval; see docs/PRIVACY_AUDIT.md.
"""

from __future__ import annotations

import copy
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_ops.bench.workloads import Workload
from unlearn_ops.params import Params
from unlearn_ops.privacy.references import DEFAULT_REFERENCES
from unlearn_ops.settings import Settings

if TYPE_CHECKING:
    import torch

    from unlearn_ops.privacy.membership import MembershipAudit
    from unlearn_ops.sisa.ensemble import SisaEnsemble

__all__ = [
    "ALSO_WORKLOADS",
    "MEMORISING",
    "PRIVACY_WORKLOAD",
    "privacy_markdown",
    "privacy_section",
    "run_privacy_benchmark",
]

PRIVACY_WORKLOAD = "mnist-mlp"
# Measured beside it, in the same run: the weak baseline must be flagged on digits too.
ALSO_WORKLOADS = ("digits-mlp",)
# And a recipe that memorises its records, at full size: the default MLPs leak too little
# for the test to find 10% of the parent's members at 1% FPR, so there an exact forget is
# `inconclusive`; here the positive control has that power, and the exact forget must pass.
# S = 8 (about 560 records a shard), 512 hidden units, 20 epochs a stage: chosen on two
# seeds of this section (docs/PRIVACY_AUDIT.md, "A recipe that memorises").
MEMORISING: tuple[Workload, ...] = (
    Workload(
        "mnist-memorising",
        "mnist-5k",
        {
            "sisa": {"shards": 8, "slices": 4},
            "model": {"name": "mlp", "hidden_sizes": [512]},
            "training": {"epochs_per_stage": 20, "batch_size": 32},
        },
        "MNIST-5k, S=8, MLP 784-512-10, 20 epochs a stage (a recipe that memorises)",
    ),
)


def _monolithic(ensemble: SisaEnsemble, rows: Any, seed: int, epochs: int) -> torch.nn.Module:
    """One model of the ensemble's family trained on `rows` (a table) with `seed`."""
    from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore
    from unlearn_ops.sisa.models import build_model
    from unlearn_ops.sisa.sharding import SLICE_COLUMN
    from unlearn_ops.sisa.training import train_shard

    params = ensemble.params
    mono = params.model_copy(
        update={
            "seed": seed,
            "sisa": params.sisa.model_copy(update={"shards": 1, "slices": 1}),
            "training": params.training.model_copy(update={"epochs_per_stage": epochs}),
        }
    )
    table = rows.copy()
    table[SLICE_COLUMN] = 0
    columns = ensemble.columns()
    trained = train_shard(
        table, shard_id=0, params=mono, columns=columns, store=MemoryCheckpointStore()
    )
    module = build_model(params.model, len(columns.feature_columns), columns.num_classes)
    module.load_state_dict(trained.state)
    return module


def _fine_tune(module: torch.nn.Module, rows: Any, ensemble: SisaEnsemble, steps: int) -> Any:
    """`steps` Adam steps of one batch each on `rows`: the weak forget."""
    import numpy as np
    import torch

    columns = ensemble.columns()
    weak = copy.deepcopy(module)
    features = torch.from_numpy(
        rows[list(columns.feature_columns)].to_numpy(dtype=np.float32, copy=True)
    )
    labels = torch.from_numpy(rows[columns.label_column].to_numpy(dtype=np.int64, copy=True))
    optimizer = torch.optim.Adam(weak.parameters(), lr=ensemble.params.training.learning_rate)
    generator = torch.Generator().manual_seed(1)
    weak.train()
    for _ in range(steps):
        batch = torch.randint(
            0, len(labels), (ensemble.params.training.batch_size,), generator=generator
        )
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(weak(features[batch]), labels[batch])
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    weak.eval()
    return weak


def _row(name: str, audit: MembershipAudit, seconds: float, note: str) -> dict[str, Any]:
    return {"case": name, "seconds": seconds, "note": note, **audit.to_dict()}


def run_privacy_benchmark(
    workload: Workload,
    work_dir: Path,
    *,
    seed: int = 0,
    also: tuple[str, ...] = ALSO_WORKLOADS,
    memorising: tuple[Workload, ...] = MEMORISING,
    **options: Any,
) -> dict[str, Any]:
    """The privacy sections: the given workload's, each workload named in `also`, then each
    workload of `memorising` (its section's `recipe` says so).

    Returns the first section, with every section (itself included) under `sections`.
    """
    from unlearn_ops.bench.workloads import WORKLOADS

    first = privacy_section(workload, work_dir / "privacy", seed=seed, **options)
    sections = [first]
    for other in [w for w in WORKLOADS if w.name in also]:
        folder = work_dir / f"privacy-{other.name}"
        sections.append(privacy_section(other, folder, seed=seed, **options))
    for index, recipe in enumerate(memorising):
        folder = work_dir / f"privacy-memorising-{index}"
        section = privacy_section(recipe, folder, seed=seed, **options)
        sections.append({**section, "recipe": f"memorising: {section['recipe']}"})
    return {**first, "sections": sections}


def privacy_section(
    workload: Workload,
    work_dir: Path,
    *,
    seed: int = 0,
    forget: int = 100,
    references: int = DEFAULT_REFERENCES,
    weak_references: int = 4,
    weak_steps: int = 5,
) -> dict[str, Any]:
    """Train, forget exactly and weakly, audit both; the rows of the privacy table.

    Args:
        workload: a built-in dataset and the params to train it with (S, model, training).
        work_dir: scratch folder.
        seed: seed of the params and of the records drawn.
        forget: records forgotten.
        references: IN/OUT reference models trained for the exact forget's online test.
        weak_references: OUT models retrained for the weak forget's (offline) audit.
        weak_steps: fine-tuning steps of the weak forget.
    """
    import pandas as pd

    from unlearn_ops.privacy.confidence import (
        AuditSamples,
        ConfidenceSample,
        module_confidences,
        split_heldout,
    )
    from unlearn_ops.privacy.membership import audit_membership
    from unlearn_ops.sisa.datasets import BUILTIN_DATASETS
    from unlearn_ops.sisa.ensemble import SisaEnsemble
    from unlearn_ops.workflow.membership_audit import (
        AuditOptions,
        audit_shard_models,
        ensemble_models,
    )

    params = Params.from_mapping({"seed": seed, **workload.params})
    settings = Settings(device="cpu", torch_threads=1, max_parallel_shards=1)
    ensemble = SisaEnsemble(work_dir / "ensemble", params, settings)
    ensemble.prepare(BUILTIN_DATASETS[workload.dataset]())
    ensemble.train()
    columns = ensemble.columns()
    parent = ensemble_models(ensemble)
    training = pd.concat(parent.tables.values(), ignore_index=True)
    ids = sorted(str(r) for r in training[columns.id_column])
    chosen = set(random.Random(seed).sample(ids, forget))  # noqa: S311 (a seeded draw)
    ensemble.forget(sorted(chosen))
    new = ensemble_models(ensemble)
    holdout = ensemble.read_holdout()
    options = AuditOptions(seed=seed, references=references, cache_dir=work_dir / "references")
    started = time.perf_counter()
    audit_shard_models(columns, new, parent, holdout, options, params)  # cold: trains
    cold_seconds = time.perf_counter() - started
    started = time.perf_counter()
    exact = audit_shard_models(columns, new, parent, holdout, options, params)
    exact_seconds = time.perf_counter() - started
    assert exact is not None  # noqa: S101 (the forget removed `forget` records)

    gone = training[columns.id_column].astype(str).isin(chosen)
    epochs = math.ceil(params.training.epochs_per_stage * (params.sisa.slices + 1) / 2)
    original = _monolithic(ensemble, training, seed, epochs)
    weak = _fine_tune(original, training[~gone], ensemble, weak_steps)
    outs = [
        _monolithic(ensemble, training[~gone], seed + 1 + k, epochs) for k in range(weak_references)
    ]

    def samples(target: torch.nn.Module) -> AuditSamples:
        parts = []
        for rows in (training[gone], holdout):
            x = rows[list(columns.feature_columns)].to_numpy(dtype="float32")
            phi = module_confidences([target, *outs], x, rows[columns.label_column].to_numpy())
            parts.append(ConfidenceSample(phi[0], phi[1:]))
        calibration, control = split_heldout(parts[1])
        return AuditSamples(parts[0], calibration, control)

    started = time.perf_counter()
    weak_audit = audit_membership(samples(weak), samples(original), seed=seed)
    weak_seconds = time.perf_counter() - started
    return {
        "dataset": workload.dataset,
        "accuracy": ensemble.evaluate(holdout),
        "cold_seconds": cold_seconds,
        "shards": params.sisa.shards,
        "recipe": _recipe(params),
        "forgotten": forget,
        "rows": [
            _row(
                "exact SISA forget",
                exact,
                exact_seconds,
                f"online: S-1={params.sisa.shards - 1} shards + {references} trained IN/OUT "
                f"references; warm (cold {cold_seconds:.1f} s, training them)",
            ),
            _row(
                f"weak forget ({weak_steps} fine-tuning steps)",
                weak_audit,
                weak_seconds,
                f"offline: {weak_references} retrained monolithic OUT references",
            ),
        ],
    }


def _recipe(params: Params) -> str:
    """The section's model and schedule in a few words (`MLP 512, 20 epochs a stage`)."""
    model = params.model
    widths = "-".join(str(h) for h in model.hidden_sizes)
    return f"{model.name.upper()} {widths}, {params.training.epochs_per_stage} epochs a stage"


def privacy_markdown(results: dict[str, Any]) -> list[str]:
    """The privacy tables (one per section): verdict, flags, AUC, TPRs, controls, with CIs."""
    lines: list[str] = []
    for section in results.get("sections", [results]):
        lines += _section_markdown(section)
    lines += [
        "",
        "95% bootstrap intervals (seeded). A pass needs at most the Binomial bar of flags and a "
        "positive control (the parent's models on the same records) with TPR@1% FPR of at "
        "least 10%; otherwise `inconclusive` (docs/PRIVACY_AUDIT.md).",
    ]
    return lines


def _section_markdown(section: dict[str, Any]) -> list[str]:
    def ci(value: dict[str, float] | None) -> str:
        if value is None:
            return "-"
        return f"{value['value']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"

    accuracy = section.get("accuracy")
    lines = [
        "",
        f"## Privacy: membership audit ({section['dataset']}, S={section['shards']}, "
        + (f"{section['recipe']}, " if section.get("recipe") else "")
        + f"{section['forgotten']} records forgotten"
        + (f", ensemble held-out accuracy {accuracy:.3f}" if accuracy is not None else "")
        + ")",
        "",
        "| case | verdict | flagged (allowed) | AUC | TPR@1% FPR | TPR@0.1% FPR | held-out flagged "
        "| positive control AUC | positive control TPR@1% | audit s | references |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in section["rows"]:
        lines.append(
            f"| {row['case']} | {row['verdict']} | {row['flagged']}/{row['forgotten']} "
            f"({row['allowed']}) | {ci(row['auc'])} | {ci(row['tpr_at_1pct_fpr'])} "
            f"| {ci(row['tpr_at_0.1pct_fpr'])} | {ci(row['heldout_fpr'])} "
            f"| {ci(row['positive_control_auc'])} "
            f"| {ci(row['positive_control_tpr_at_1pct_fpr'])} | {row['seconds']:.2f} "
            f"| {row['note']} |"
        )
    return lines

"""One model on a whole training table, with the deterministic recipe of the SISA shards.

A monolithic model is what teams have in production and what approximate methods edit; it is
also the retrain oracle (the same recipe on the table without the forgotten records). It is
trained as one shard of one slice by :func:`unlearn_ops.sisa.training.train_shard`, so it
shares the shards' optimizer, batch size, seeding and fixed data order: the same table, params
and seed give bit-identical weights, which is what makes "retrain without the records" exact.

The training budget matches the SISA ensemble's: the SISA schedule runs
``epochs_per_stage x (R + 1) / 2`` epochs' worth of examples over the training set, so the
monolithic model trains that many epochs (rounded up), as `make bench` does.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from unlearn_ops.params import Params
from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore
from unlearn_ops.sisa.sharding import SLICE_COLUMN
from unlearn_ops.sisa.training import ShardColumns, train_shard

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

__all__ = [
    "monolithic_epochs",
    "monolithic_gradient_steps",
    "monolithic_params",
    "train_monolithic",
]


def monolithic_epochs(params: Params) -> int:
    """Epochs of a monolithic model with the SISA ensemble's budget: ceil(E x (R + 1) / 2)."""
    return math.ceil(params.training.epochs_per_stage * (params.sisa.slices + 1) / 2)


def monolithic_params(params: Params, seed: int, epochs: int | None = None) -> Params:
    """`params` as one shard of one slice, seeded with `seed`, for `epochs` (default above)."""
    return params.model_copy(
        update={
            "seed": seed,
            "sisa": params.sisa.model_copy(update={"shards": 1, "slices": 1}),
            "training": params.training.model_copy(
                update={"epochs_per_stage": epochs or monolithic_epochs(params)}
            ),
        }
    )


def monolithic_gradient_steps(num_records: int, params: Params, epochs: int | None = None) -> int:
    """Optimizer steps of :func:`train_monolithic` on `num_records` records (the retrain cost)."""
    per_epoch = math.ceil(num_records / params.training.batch_size)
    return per_epoch * (epochs or monolithic_epochs(params))


def train_monolithic(
    table: pd.DataFrame,
    columns: ShardColumns,
    params: Params,
    seed: int,
    *,
    epochs: int | None = None,
    threads: int = 1,
) -> nn.Module:
    """Train one model of `params.model` on every record of `table`, deterministically.

    Args:
        table: the training records (id, label and feature columns; other columns ignored).
        columns: column names and class count.
        params: the pipeline params (model, optimizer, batch size, learning rate, DP).
        seed: seeds the initial weights and the data order (replaces `params.seed`).
        epochs: epochs over the table; default :func:`monolithic_epochs` of `params`.
        threads: intra-op torch threads.

    Returns:
        The trained model, on the CPU, in eval mode.
    """
    from unlearn_ops.sisa.models import build_model

    mono = monolithic_params(params, seed, epochs)
    rows = table[[columns.id_column, columns.label_column, *columns.feature_columns]].copy()
    rows[SLICE_COLUMN] = 0
    trained = train_shard(
        rows,
        shard_id=0,
        params=mono,
        columns=columns,
        store=MemoryCheckpointStore(),
        threads=threads,
    )
    module = build_model(params.model, len(columns.feature_columns), columns.num_classes)
    module.load_state_dict(trained.state)
    module.eval()
    return module

"""Reference models trained for the membership audit: IN and OUT models, cached by content key.

The ``S - 1`` other shard models are free OUT references, but few: with them alone the
offline test has almost no power on models that generalise well (MNIST-5k's default MLP:
the positive control found none of the records its parent trained on at 1% FPR). Online
LiRA (Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022,
sec. IV-C) adds reference models trained *with* each audited record (IN) as well as
without (OUT), and scores a record by how much more its target's confidence looks like
the IN models' than like the OUT models'.

The design here:

- **Same recipe, same size.** Each reference model is trained like a shard
  (:func:`unlearn_ops.sisa.training.train_shard`: the version's params, its R slices and
  stages, its optimizer, DP-SGD if on) on as many records as the audited shards hold.
- **Balanced inclusion.** The audited records (forgotten and held-out) are each IN in
  the same number of models (:func:`inclusion_plan`: a seeded draw, about half of them,
  fewer when the audited records outnumber half a shard); the rest of each model's
  records are drawn from the version's retained training records, which are audited in
  none of its statistics.
- **Cached by content key** (:func:`reference_key`): the params that shape training, the
  number of models, the plan's seed, and a digest of the audited records and the pool
  (ids, features and labels, in order). The same version audited again reads the phi of
  its references from ``cache_dir`` instead of training them: the cache holds scores
  only, never weights or records.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from unlearn_ops.atomic import write_atomic

if TYPE_CHECKING:
    import pandas as pd

    from unlearn_ops.params import Params
    from unlearn_ops.sisa.training import ShardColumns

__all__ = [
    "DEFAULT_REFERENCES",
    "ReferenceConfidences",
    "inclusion_plan",
    "reference_confidences",
    "reference_key",
]

FloatArray = NDArray[np.float64]

# 64 models (about 28 IN and 36 OUT per record on MNIST-5k): the test's power has
# saturated there. With the references themselves as targets (leave one out), members are
# found at 1% FPR 13% (24 models), 14% (32), 15% (48 and 64) of the time on MNIST-5k's
# default MLP, 8-9% of the forgotten records alone, which the positive control on 100
# records reads as 5-7% (docs/PRIVACY_AUDIT.md, "Can a stronger test...").
DEFAULT_REFERENCES = 64
# Reference models' shard ids start here (their initial weights and data order are seeded
# by the shard id): far from any ensemble's own shards.
_FIRST_SHARD_ID = 1_000_000
_KEY_VERSION = "references-v1"


@dataclass(frozen=True)
class ReferenceConfidences:
    """phi of the audited records under the reference models, and who trained on what.

    Attributes:
        phi: (models, records), records in the order they were given.
        inside: (models, records): whether each model trained on each record.
        key: the content key the scores are cached under.
        cached: whether they were read from the cache (False: trained now).
    """

    phi: FloatArray
    inside: NDArray[np.bool_]
    key: str
    cached: bool


def inclusion_plan(records: int, models: int, rate: float, seed: int) -> NDArray[np.bool_]:
    """Which models train on which record: each record IN in the same number of models.

    Args:
        records: audited records.
        models: reference models (at least 4).
        rate: the share of models each record is IN (rounded; at least 2 IN and 2 OUT).
        seed: seed of the draw.

    Returns:
        A boolean (models, records) matrix.
    """
    if models < 4:
        raise ValueError(f"the online test needs at least 4 reference models, got {models}")
    inside_count = min(max(round(rate * models), 2), models - 2)
    rng = np.random.default_rng(seed)
    scores = rng.random((models, records))
    # The `inside_count` smallest draws of each column: a uniform choice of models.
    order = np.argsort(scores, axis=0)
    plan = np.zeros((models, records), dtype=bool)
    np.put_along_axis(plan, order[:inside_count], True, axis=0)
    return plan


def _frame_digest(frame: pd.DataFrame, columns: list[str]) -> str:
    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def reference_key(
    params: Params,
    columns: ShardColumns,
    audited: pd.DataFrame,
    pool: pd.DataFrame,
    *,
    models: int,
    shard_size: int,
    seed: int,
) -> str:
    """The content key of a set of reference models' scores (a sha256 hex digest)."""
    used = [columns.id_column, *columns.feature_columns, columns.label_column]
    described = {
        "version": _KEY_VERSION,
        "training": params.training_hash(),
        "model": params.model.model_dump(mode="json"),
        "slices": params.sisa.slices,
        "salt": params.sisa.salt,
        "seed": params.seed,
        "models": models,
        "shard_size": shard_size,
        "plan_seed": seed,
        "audited": _frame_digest(audited, used),
        "pool": _frame_digest(pool, used),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def reference_confidences(
    audited: pd.DataFrame,
    pool: pd.DataFrame,
    *,
    params: Params,
    columns: ShardColumns,
    shard_size: int,
    models: int = DEFAULT_REFERENCES,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> ReferenceConfidences:
    """phi of `audited` under `models` reference models trained like a shard of `params`.

    Each model trains on ``shard_size`` records: the audited records the plan puts IN it,
    and a seeded draw from `pool` for the rest. Records without a slice (held-out ones)
    get the slice their id hashes to, as a shard would give them.

    Args:
        audited: the records under audit (forgotten and held-out), in a fixed order.
        pool: retained training records that fill each model up to ``shard_size``.
        params: the version's params (the recipe).
        columns: column names and class count.
        shard_size: records per reference model (the audited shards' size).
        models: reference models to train.
        seed: seed of the inclusion plan and of the draws from the pool.
        cache_dir: where scores are cached by content key (None: no cache).
    """
    key = reference_key(
        params, columns, audited, pool, models=models, shard_size=shard_size, seed=seed
    )
    path = None if cache_dir is None else Path(cache_dir) / f"{key}.npz"
    if path is not None and path.exists():
        with np.load(path) as stored:
            return ReferenceConfidences(stored["phi"], stored["inside"], key, True)
    phi, inside = _train_references(audited, pool, params, columns, shard_size, models, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda temp: _save(temp, phi, inside))
    return ReferenceConfidences(phi, inside, key, False)


def _save(path: Path, phi: FloatArray, inside: NDArray[np.bool_]) -> None:
    with path.open("wb") as handle:
        np.savez(handle, phi=phi, inside=inside)


def _train_references(
    audited: pd.DataFrame,
    pool: pd.DataFrame,
    params: Params,
    columns: ShardColumns,
    shard_size: int,
    models: int,
    seed: int,
) -> tuple[FloatArray, NDArray[np.bool_]]:
    import pandas as pd

    from unlearn_ops.privacy.confidence import module_confidences
    from unlearn_ops.sisa.checkpoints import MemoryCheckpointStore
    from unlearn_ops.sisa.models import build_model
    from unlearn_ops.sisa.sharding import SLICE_COLUMN, assign_slices
    from unlearn_ops.sisa.training import train_shard

    rows = audited.reset_index(drop=True).copy()
    slices = assign_slices(rows[columns.id_column], params.sisa.slices, params.sisa.salt)
    if SLICE_COLUMN in rows:
        rows[SLICE_COLUMN] = rows[SLICE_COLUMN].fillna(pd.Series(slices)).astype("int64")
    else:
        rows[SLICE_COLUMN] = slices
    rate = min(0.5, 0.5 * shard_size / max(len(rows), 1))
    plan = inclusion_plan(len(rows), models, rate, seed)
    features = rows[list(columns.feature_columns)].to_numpy(dtype=np.float32)
    labels = rows[columns.label_column].to_numpy()
    used = [*rows.columns]
    phi = np.empty((models, len(rows)), dtype=np.float64)
    for index in range(models):
        chosen = rows[plan[index]]
        fill = max(0, min(shard_size - len(chosen), len(pool)))
        drawn = pool.sample(n=fill, random_state=seed * 7919 + index)
        table = pd.concat([chosen, drawn[[c for c in used if c in drawn]]], ignore_index=True)
        trained = train_shard(
            table,
            shard_id=_FIRST_SHARD_ID + index,
            params=params,
            columns=columns,
            store=MemoryCheckpointStore(),
        )
        module = build_model(params.model, len(columns.feature_columns), columns.num_classes)
        module.load_state_dict(trained.state)
        phi[index] = module_confidences([module], features, labels)[0]
    return phi, plan

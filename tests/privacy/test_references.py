"""Reference models for the online test: trained like a shard, IN as planned, cached by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unlearn_ops.params import Params
from unlearn_ops.privacy.references import reference_confidences, reference_key
from unlearn_ops.sisa.datasets import load_digits
from unlearn_ops.sisa.sharding import SLICE_COLUMN, assign_slices
from unlearn_ops.sisa.training import ShardColumns

PARAMS = Params.from_mapping(
    {
        "sisa": {"shards": 4, "slices": 2},
        "model": {"name": "mlp", "hidden_sizes": [16]},
        "training": {"epochs_per_stage": 2, "batch_size": 16},
    }
)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, ShardColumns]:
    """20 audited records (10 of them without a slice, like held-out ones) and a pool of 60."""
    dataset = load_digits()
    frame = dataset.frame.iloc[:80].copy()
    frame[SLICE_COLUMN] = assign_slices(frame["record_id"], 2, PARAMS.sisa.salt)
    audited = pd.concat([frame.iloc[:10], frame.iloc[10:20].drop(columns=SLICE_COLUMN)])
    columns = ShardColumns("record_id", "label", dataset.feature_columns, 10)
    return audited, frame.iloc[20:], columns


def test_references_train_on_the_plan_and_are_cached_by_content(
    data: tuple[pd.DataFrame, pd.DataFrame, ShardColumns], tmp_path: Path
) -> None:
    audited, pool, columns = data
    options = {"params": PARAMS, "columns": columns, "shard_size": 30, "models": 4}
    first = reference_confidences(audited, pool, cache_dir=tmp_path, **options)
    assert first.phi.shape == first.inside.shape == (4, 20)
    assert set(first.inside.sum(axis=0)) == {2}  # 20 audited, 30 per model: rate 0.5
    assert np.isfinite(first.phi).all()
    assert not first.cached
    assert (tmp_path / f"{first.key}.npz").exists()
    # IN models are more confident on the records they trained on.
    in_mean = np.where(first.inside, first.phi, 0).sum() / first.inside.sum()
    out_mean = np.where(~first.inside, first.phi, 0).sum() / (~first.inside).sum()
    assert in_mean > out_mean

    again = reference_confidences(audited, pool, cache_dir=tmp_path, **options)
    assert again.cached
    assert again.key == first.key
    assert (again.phi == first.phi).all()
    assert (again.inside == first.inside).all()
    # Trained again without the cache: the same numbers (seeded, CPU-deterministic).
    fresh = reference_confidences(audited, pool, cache_dir=None, **options)
    assert (fresh.phi == first.phi).all()


def test_the_key_changes_with_the_records_the_recipe_and_the_count(
    data: tuple[pd.DataFrame, pd.DataFrame, ShardColumns],
) -> None:
    audited, pool, columns = data

    def key(**changes: object) -> str:
        given = {
            "params": PARAMS,
            "columns": columns,
            "audited": audited,
            "pool": pool,
            "models": 4,
            "shard_size": 30,
            "seed": 0,
        }
        given.update(changes)
        return reference_key(**given)  # type: ignore[arg-type]

    base = key()
    assert key() == base
    assert key(pool=pool.iloc[1:]) != base
    changed = audited.copy()
    changed.iloc[0, changed.columns.get_loc("pixel_10")] += 0.5
    assert key(audited=changed) != base
    assert key(models=5) != base
    assert key(seed=1) != base
    slower = PARAMS.model_copy(
        update={"training": PARAMS.training.model_copy(update={"learning_rate": 0.01})}
    )
    assert key(params=slower) != base

"""What the MLflow adapter tests share: a tiny ensemble's params, CPU settings, what is logged."""

from __future__ import annotations

import numpy as np
import pandas as pd

from unlearn_ops.params import Params
from unlearn_ops.settings import Settings
from unlearn_ops.sisa.ensemble import SisaEnsemble

SETTINGS = Settings(device="cpu", torch_threads=1, max_parallel_shards=1)


def tiny_params(
    seed: int, shards: int, salt: str, *, epochs: int = 2, learning_rate: float = 0.01
) -> Params:
    """`shards` shards of one slice each, an [8] MLP, batches of 32: trained in seconds."""
    return Params.from_mapping(
        {
            "seed": seed,
            "sisa": {"shards": shards, "slices": 1, "salt": salt},
            "model": {"name": "mlp", "hidden_sizes": [8]},
            "training": {
                "epochs_per_stage": epochs,
                "batch_size": 32,
                "learning_rate": learning_rate,
            },
        }
    )


def training_and_signature(
    ensemble: SisaEnsemble,
) -> tuple[pd.DataFrame, tuple[pd.DataFrame, pd.DataFrame]]:
    """The ensemble's training rows, and the signature frames to log with them.

    The frames: five training rows' features, and the ensemble's answers for them
    (`prediction`, then `probability_k` per class).
    """
    training = pd.concat([ensemble.read_shard(s) for s in ensemble.shard_ids], ignore_index=True)
    sample = training[list(ensemble.columns().feature_columns)].head(5)
    probabilities = ensemble.predict_proba(sample.to_numpy(dtype=np.float32))
    output = pd.DataFrame(probabilities, columns=[f"probability_{k}" for k in range(3)])
    output.insert(0, "prediction", probabilities.argmax(axis=1))
    return training, (sample, output)

"""Each shard model's held-out outputs, cached by its weights and the held-out data (issue 15).

Evaluating an ensemble runs every shard model over the held-out table, yet a forget
retrains a few shards: the others have the same weights and see the same records, so
their outputs are the same. Each shard's class probabilities on the held-out table are
kept in

    WS/.unlearn-ops/held-out/<MD5 of the held-out file>/<key>.npy

where the key hashes the SHA-256 of the shard's weights file as served (the bytes that
are loaded, whatever the metadata beside them says; the name of its blob in the registry)
and the model family's params (the same tensors in another architecture compute something
else). Only
the shards without an entry are run; the ensemble's scores are then aggregated exactly as
:meth:`unlearn_ops.sisa.ensemble.SisaEnsemble.predict_proba` does (the same per-shard
softmax over the whole table, the same aggregation), so the metrics do not change.

Entries of another held-out file (a forget that removed held-out records) or of weights
no shard serves any more are deleted after each evaluation: outputs of models trained on
forgotten records do not outlive the next evaluation.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unlearn_ops.atomic import write_atomic

if TYPE_CHECKING:
    import pandas as pd

    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["HeldOutOutputs", "held_out_outputs"]


@dataclass(frozen=True)
class HeldOutOutputs:
    """The ensemble's outputs on the held-out table.

    Attributes:
        holdout: the held-out table they were computed on.
        shard_outputs: class probabilities per shard (shards x records x classes).
        scores: the aggregated scores (records x classes).
        computed: shards run now (the others came from the cache).
    """

    holdout: pd.DataFrame
    shard_outputs: np.ndarray
    scores: np.ndarray
    computed: tuple[int, ...]

    @property
    def predictions(self) -> np.ndarray:
        """Predicted class per held-out record."""
        classes: np.ndarray = self.scores.argmax(axis=1)
        return classes


def _md5(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _entry_key(weights_sha256: str, model_params: str) -> str:
    return hashlib.sha256(f"{weights_sha256}\n{model_params}".encode()).hexdigest()[:40]


def held_out_outputs(workspace: Workspace) -> HeldOutOutputs:
    """Every shard's outputs on the held-out table, running only shards not cached.

    Raises:
        StoreError: the ensemble is not prepared, or a shard has no model.
    """
    from unlearn_ops.errors import StoreError
    from unlearn_ops.sisa.aggregation import aggregate

    ensemble = workspace.ensemble
    columns = ensemble.columns()
    holdout = ensemble.read_holdout()
    folder = workspace.root / ".unlearn-ops" / "held-out" / _md5(ensemble.holdout_path)
    model_params = json.dumps(ensemble.params.model.model_dump(mode="json"), sort_keys=True)
    keys = {}
    for shard_id in ensemble.shard_ids:
        info = ensemble.served_model_info(shard_id)
        if info is None or not ensemble.model_path(shard_id).is_file():
            raise StoreError(
                ensemble.model_path(shard_id), "shard model is missing", "train the ensemble first"
            )
        keys[shard_id] = _entry_key(_sha256(ensemble.model_path(shard_id)), model_params)
    features = holdout[list(columns.feature_columns)].to_numpy(dtype=np.float32)
    outputs: dict[int, np.ndarray] = {}
    computed = []
    for shard_id, key in keys.items():
        path = folder / f"{key}.npy"
        if path.is_file():
            outputs[shard_id] = np.load(path, allow_pickle=False)
            continue
        outputs[shard_id] = _run_shard(workspace, shard_id, features, columns.num_classes)
        buffer = io.BytesIO()
        np.save(buffer, outputs[shard_id], allow_pickle=False)
        write_atomic(path, buffer.getvalue())
        computed.append(shard_id)
    _prune(folder, {f"{key}.npy" for key in keys.values()})
    stacked = np.stack([outputs[s] for s in ensemble.shard_ids])
    scores = aggregate(stacked, ensemble.params.sisa.aggregation)
    return HeldOutOutputs(holdout, stacked, scores, tuple(computed))


def _run_shard(
    workspace: Workspace, shard_id: int, features: np.ndarray, num_classes: int
) -> np.ndarray:
    """One shard's softmax over the whole table, as the ensemble computes it."""
    import torch

    from unlearn_ops.sisa.models import build_model
    from unlearn_ops.sisa.training import load_state

    ensemble = workspace.ensemble
    module = build_model(ensemble.params.model, features.shape[1], num_classes)
    module.load_state_dict(load_state(ensemble.model_path(shard_id).read_bytes()))
    module.eval()
    with torch.no_grad():
        result: np.ndarray = torch.softmax(
            module(torch.from_numpy(np.ascontiguousarray(features))), dim=1
        ).numpy()
    return result


def _prune(folder: Path, keep: set[str]) -> None:
    """Delete entries of other held-out files and of weights no shard serves now."""
    for other in folder.parent.iterdir():
        if other.is_dir() and other != folder:
            shutil.rmtree(other, ignore_errors=True)
    for entry in folder.iterdir():
        if entry.name not in keep:
            entry.unlink(missing_ok=True)

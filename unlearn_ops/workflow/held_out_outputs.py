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

The serving version (`champion`) is compared with the candidate record by record (the
metric gate), so its outputs are needed too. Its shards are named by the same SHA-256 in
the registry (:class:`~unlearn_ops.serving.versions.ServedShards`): a forget retrained a
few shards, and the champion's other shards are the candidate's own weights, while its
retrained shards' entries were written when the champion was the candidate. When every
entry is there, the champion's scores are aggregated from them with its own params
(model family and aggregation), without loading its model from the registry; when one is
missing (a rollback to an older version, a held-out file that changed, weights released
with noise), :attr:`HeldOutOutputs.champion_scores` is None and the caller loads it.

Entries of another held-out file (a forget that removed held-out records) or of weights
neither the candidate nor the champion serves are deleted after each evaluation, and
:func:`keep_served_only` drops the previous champion's when a version is promoted: outputs
of models trained on forgotten records do not outlive the version that served them.
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

    from unlearn_ops.params import Params
    from unlearn_ops.serving.versions import ServedShards
    from unlearn_ops.workflow.workspace import Workspace

__all__ = ["HeldOutOutputs", "held_out_outputs", "keep_served_only"]


@dataclass(frozen=True)
class HeldOutOutputs:
    """The ensemble's outputs on the held-out table.

    Attributes:
        holdout: the held-out table they were computed on.
        shard_outputs: class probabilities per shard (shards x records x classes).
        scores: the aggregated scores (records x classes).
        computed: shards run now (the others came from the cache).
        champion_scores: the serving version's aggregated scores on the same records,
            from the cache; None when no champion was given or an entry of its shards
            is missing.
    """

    holdout: pd.DataFrame
    shard_outputs: np.ndarray
    scores: np.ndarray
    computed: tuple[int, ...]
    champion_scores: np.ndarray | None = None

    @property
    def predictions(self) -> np.ndarray:
        """Predicted class per held-out record."""
        classes: np.ndarray = self.scores.argmax(axis=1)
        return classes

    @property
    def champion_predictions(self) -> np.ndarray | None:
        """The champion's predicted class per held-out record (None: not from the cache)."""
        if self.champion_scores is None:
            return None
        classes: np.ndarray = self.champion_scores.argmax(axis=1)
        return classes


def _md5(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _entry_key(weights_sha256: str, model_params: str) -> str:
    return hashlib.sha256(f"{weights_sha256}\n{model_params}".encode()).hexdigest()[:40]


def _model_key(params: Params) -> str:
    return json.dumps(params.model.model_dump(mode="json"), sort_keys=True)


def _shard_keys(workspace: Workspace) -> dict[int, str]:
    """Each shard's cache key, from its weights file as served now.

    Raises:
        StoreError: a shard has no model.
    """
    from unlearn_ops.errors import StoreError

    ensemble = workspace.ensemble
    model_params = _model_key(ensemble.params)
    keys = {}
    for shard_id in ensemble.shard_ids:
        info = ensemble.served_model_info(shard_id)
        if info is None or not ensemble.model_path(shard_id).is_file():
            raise StoreError(
                ensemble.model_path(shard_id), "shard model is missing", "train the ensemble first"
            )
        keys[shard_id] = _entry_key(_sha256(ensemble.model_path(shard_id)), model_params)
    return keys


def _champion_entries(champion: ServedShards) -> tuple[list[str], Params] | None:
    """The champion's cache keys (in shard order) and params; None if unreadable."""
    import yaml

    from unlearn_ops.errors import ConfigError
    from unlearn_ops.params import Params

    try:
        params = Params.from_mapping(
            yaml.safe_load(champion.params_text), source=f"version {champion.version}'s params"
        )
    except (ConfigError, yaml.YAMLError):
        return None
    model_params = _model_key(params)
    return [_entry_key(digest, model_params) for digest in champion.digests], params


def held_out_outputs(workspace: Workspace, champion: ServedShards | None = None) -> HeldOutOutputs:
    """Every shard's outputs on the held-out table, running only shards not cached.

    Args:
        workspace: the workspace whose served shards (the candidate) are evaluated.
        champion: the serving version's shards, to compare with: its entries are kept, and
            its scores come back when every one of them is cached.

    Raises:
        StoreError: the ensemble is not prepared, or a shard has no model.
    """
    from unlearn_ops.sisa.aggregation import aggregate

    ensemble = workspace.ensemble
    columns = ensemble.columns()
    holdout = ensemble.read_holdout()
    folder = workspace.root / ".unlearn-ops" / "held-out" / _md5(ensemble.holdout_path)
    keys = _shard_keys(workspace)
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
    keep = set(keys.values())
    champion_scores = None
    entries = None if champion is None else _champion_entries(champion)
    if entries is not None:
        champion_keys, champion_params = entries
        keep.update(champion_keys)
        paths = [folder / f"{key}.npy" for key in champion_keys]
        if all(path.is_file() for path in paths):
            champion_scores = aggregate(
                np.stack([np.load(path, allow_pickle=False) for path in paths]),
                champion_params.sisa.aggregation,
            )
    _prune(folder, {f"{key}.npy" for key in keep})
    stacked = np.stack([outputs[s] for s in ensemble.shard_ids])
    scores = aggregate(stacked, ensemble.params.sisa.aggregation)
    return HeldOutOutputs(holdout, stacked, scores, tuple(computed), champion_scores)


def keep_served_only(workspace: Workspace) -> None:
    """Delete every entry but those of the shards the workspace serves now.

    Called when a version is promoted (the workspace's shards are the champion's then):
    the previous champion's entries, whose models may have been trained on records a
    forget removed, go with it. Never raises for a missing file: the promotion has
    happened, and the next evaluation prunes what this could not.
    """
    from unlearn_ops.errors import StoreError

    cache = workspace.root / ".unlearn-ops" / "held-out"
    if not cache.is_dir():  # nothing cached: a monolithic workspace, or none evaluated yet
        return
    try:
        folder = cache / _md5(workspace.ensemble.holdout_path)
        keep = {f"{key}.npy" for key in _shard_keys(workspace).values()}
    except (StoreError, OSError):
        return
    if folder.is_dir():
        _prune(folder, keep)


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

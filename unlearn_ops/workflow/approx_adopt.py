"""Adopting a torch classifier a team registered in MLflow as version 1 of a monolithic workspace.

The documented input layout (README, "Adopting a model"): the module is a multilayer
perceptron laid out as the `mlp` factory builds it, `nn.Sequential(Linear, ReLU, ...,
Linear)`, whose input is the table's feature columns in their order (every column but the
id and the label) as float32, and whose output is one logit per class. That layout is what
lets the exact retrain rebuild the same architecture with the workspace's deterministic
recipe. The checks here run before anything is created: a module of another layout, a
table whose features or classes do not fit it, or ids missing from the table each get one
:class:`~unlearn_ops.errors.AdoptionError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unlearn_ops.atomic import write_atomic
from unlearn_ops.errors import AdoptionError, DatasetError
from unlearn_ops.workflow.approximate import MONOLITHIC_SHARD
from unlearn_ops.workflow.retraining import ShardTrained
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from torch import nn

    from unlearn_ops.sisa.datasets import Dataset

__all__ = ["Adoptable", "check_adoptable", "install_adopted", "read_adopted_table"]

LAYOUT_HINT = (
    "adopt takes an MLP laid out as nn.Sequential(Linear, ReLU, ..., Linear) over the "
    "table's feature columns, one logit per class, logged with mlflow.pytorch.log_model("
    "..., serialization_format='pickle') (README: adopting a model)"
)


@dataclass(frozen=True)
class Adoptable:
    """What the checks found: the layout to retrain with, and the table's shape."""

    hidden_sizes: tuple[int, ...]
    num_features: int
    num_classes: int


def read_adopted_table(model_uri: str, path: Path, id_column: str, label_column: str) -> Dataset:
    """The adopted model's training table, validated like any dataset.

    Raises:
        AdoptionError: no id column, rows without an id, duplicated ids, bad labels.
    """
    from unlearn_ops.sisa.datasets import load_dataset

    try:
        return load_dataset(str(path), id_column=id_column, label_column=label_column)
    except DatasetError as exc:
        # The loader's hint names params.yaml, which `adopt` has not written yet.
        raise AdoptionError(
            model_uri,
            f"its table {path.name}: {exc.problem}",
            "name its columns with --id-column and --label-column; every row needs its own id",
        ) from exc


def check_adoptable(model_uri: str, module: nn.Module, dataset: Dataset) -> Adoptable:
    """Check that `module` is an MLP of the documented layout that fits `dataset`.

    Raises:
        AdoptionError: another layout, features that do not match, too few outputs.
    """
    import numpy as np
    import torch
    from torch import nn

    layers = list(module.children()) if isinstance(module, nn.Sequential) else []
    linear = [layer for layer in layers if isinstance(layer, nn.Linear)]
    expected: list[type[nn.Module]] = []
    for _ in linear[:-1]:
        expected += [nn.Linear, nn.ReLU]
    expected.append(nn.Linear)
    if not linear or [type(layer) for layer in layers] != expected:
        found = type(module).__name__ if not layers else [type(x).__name__ for x in layers]
        raise AdoptionError(
            model_uri, f"not an MLP classifier of the known layout ({found})", LAYOUT_HINT
        )
    columns = dataset.feature_columns
    if linear[0].in_features != len(columns):
        raise AdoptionError(
            model_uri,
            f"features do not match: the model takes {linear[0].in_features} inputs, the "
            f"table has {len(columns)} feature columns ({', '.join(columns[:5])}...)",
            "give the table it was trained on, or set its feature columns",
        )
    classes = linear[-1].out_features
    if classes < dataset.num_classes:
        raise AdoptionError(
            model_uri,
            f"the model answers {classes} classes, the table's labels go up to "
            f"{dataset.num_classes - 1}",
        )
    sample = dataset.frame[list(columns)].head(8).to_numpy(dtype=np.float32, copy=True)
    with torch.no_grad():
        output = module(torch.from_numpy(sample))
    if tuple(output.shape) != (len(sample), classes):
        raise AdoptionError(model_uri, f"its output has shape {tuple(output.shape)}", LAYOUT_HINT)
    return Adoptable(tuple(layer.out_features for layer in linear[:-1]), len(columns), classes)


def install_adopted(workspace: Workspace, weights: str, model_uri: str) -> ShardTrained:
    """Serve the adopted weights (a file saved by the CLI) as the workspace's one model.

    The model's metadata names the current shard file, so it is not stale: version 1 is
    the team's model as it was. Its `adopted` field keeps where it came from; the
    exactness certificate of this version fails, honestly, since our recipe did not make it.
    """
    from unlearn_ops.sisa.training import load_state, weights_digest

    ensemble = workspace.ensemble
    data = Path(weights).read_bytes()
    state = load_state(data)
    weights_hash = weights_digest(state)
    write_atomic(ensemble.model_path(MONOLITHIC_SHARD), data)
    with ensemble.shard_path(MONOLITHIC_SHARD).open("rb") as file:
        digest = hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False))
    info = {
        "shard_id": MONOLITHIC_SHARD,
        "stage_keys": [],
        "weights_hash": weights_hash,
        "num_records": len(ensemble.read_shard(MONOLITHIC_SHARD)),
        "training_hash": workspace.params.training_hash(),
        "data_md5": digest.hexdigest(),
        "adopted": {"model_uri": model_uri},
    }
    meta_path = ensemble.model_path(MONOLITHIC_SHARD).with_suffix(".json")
    write_atomic(meta_path, json.dumps(info, indent=2) + "\n")
    return ShardTrained(MONOLITHIC_SHARD, 0, (), weights_hash, 0.0)

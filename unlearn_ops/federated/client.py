"""Local training on a client, deterministic on the CPU, and the weights it exchanges.

Weights travel as a list of numpy arrays in the model's `state_dict` order (what Flower's
`ArrayRecord` carries). Local training is a pure function of the incoming weights, the
client's table, the params, the seed, the client id and the round: the batch order and
dropout are seeded from (seed, client id, round, epoch) and the kernels are deterministic,
so a federation replayed without a client is bit-for-bit the federation that never had it
(the premise of the exact-removal certificate, as for SISA shards).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from unlearn_ops.federated.config import FederationParams
from unlearn_ops.federated.data import ClientData
from unlearn_ops.sisa.hashing import derive_seed
from unlearn_ops.sisa.models import build_model

if TYPE_CHECKING:
    import torch

__all__ = [
    "LocalResult",
    "Weights",
    "initial_weights",
    "load_weights",
    "local_update",
    "predict_proba",
    "weights_hash",
]

Weights = list[np.ndarray]
"""A model's parameters and buffers, float32 arrays in `state_dict` order."""


class LocalResult(NamedTuple):
    """What a client sends back after a round: Flower's `(arrays, num-examples, metrics)`."""

    weights: Weights
    num_examples: int
    metrics: dict[str, float]


def _deterministic_torch() -> None:
    """Deterministic kernels on one intra-op thread (as :mod:`unlearn_ops.sisa.training`)."""
    import torch

    if not torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(True)
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _build(params: FederationParams, num_features: int, num_classes: int) -> torch.nn.Module:
    return build_model(params.model, num_features, num_classes)


def initial_weights(
    params: FederationParams, num_features: int, num_classes: int, *, group_id: int = 0
) -> Weights:
    """The untrained model of a group, seeded from (seed, group)."""
    import torch

    _deterministic_torch()
    torch.manual_seed(derive_seed(params.seed, "federated-init", group_id) >> 1)
    model = _build(params, num_features, num_classes)
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def load_weights(
    weights: Weights, params: FederationParams, num_features: int, num_classes: int
) -> torch.nn.Module:
    """A model of the params' family holding `weights`.

    Raises:
        ValueError: the weights do not fit the model (count or shapes).
    """
    import torch

    model = _build(params, num_features, num_classes)
    names = list(model.state_dict())
    if len(names) != len(weights):
        raise ValueError(f"{len(weights)} arrays given, the model has {len(names)}")
    state = {
        name: torch.from_numpy(np.ascontiguousarray(w))
        for name, w in zip(names, weights, strict=True)
    }
    model.load_state_dict(state)
    return model


def local_update(
    weights: Weights,
    data: ClientData,
    params: FederationParams,
    *,
    num_classes: int,
    round_number: int,
    epochs: int | None = None,
    seed: int | None = None,
) -> LocalResult:
    """Train `params.local_epochs` epochs on the client's table from `weights`.

    Args:
        weights: the group model the server sent.
        data: the client's table.
        params: the federation's params (model, optimizer, batch size).
        num_classes: classes of the task (the model's output width).
        round_number: the round (part of the seed of the batch order).
        epochs: local epochs instead of `params.local_epochs` (FedEraser's calibration).
        seed: the seed instead of `params.seed`.

    Returns:
        The new weights, the number of examples, and metrics (`train_loss`, the mean
        loss of the last epoch).
    """
    import torch

    _deterministic_torch()
    seed = params.seed if seed is None else seed
    model = load_weights(weights, params, data.features.shape[1], num_classes)
    features = torch.from_numpy(np.ascontiguousarray(data.features, dtype=np.float32))
    labels = torch.from_numpy(np.ascontiguousarray(data.labels, dtype=np.int64))
    if params.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=params.learning_rate
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=params.learning_rate, momentum=params.momentum
        )
    loss_function = torch.nn.CrossEntropyLoss()
    count = len(labels)
    last_loss = 0.0
    model.train()
    for epoch in range(params.local_epochs if epochs is None else epochs):
        generator = torch.Generator().manual_seed(
            derive_seed(seed, "federated", data.client_id, round_number, epoch) >> 1
        )
        permutation = torch.randperm(count, generator=generator)
        total = 0.0
        for start in range(0, count, params.batch_size):
            batch = permutation[start : start + params.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(model(features[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        last_loss = total / count
    new_weights = [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]
    return LocalResult(new_weights, count, {"train_loss": last_loss})


def predict_proba(
    weights: Weights, features: np.ndarray, params: FederationParams, num_classes: int
) -> np.ndarray:
    """Class probabilities `(n, num_classes)` of the model holding `weights`."""
    import torch

    model = load_weights(weights, params, features.shape[1], num_classes)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
        return torch.softmax(logits, dim=1).numpy()


def weights_hash(weights: Weights) -> str:
    """SHA-256 over dtypes, shapes and bytes of every array, in order: the certificate's hash."""
    digest = hashlib.sha256()
    for index, array in enumerate(weights):
        array = np.ascontiguousarray(array)
        digest.update(f"{index}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()

"""SISA shard training: R stages, a checkpoint after each, resumable, deterministic.

Stage j trains the model of stage j-1 on slices 0..j (Bourtoule et al. 2021, section IV-C).
Everything random is seeded from (seed, shard, stage, epoch) and data are visited in a
fixed order, so training a shard is a pure function of its records and the params: a
retrained shard is bit-for-bit the model that training without the forgotten records gives.
With `training.dp.enabled`, stages run DP-SGD (opacus, :mod:`unlearn_ops.sisa.dp`)
with noise keyed by the operator's secret and each stage's content, so they stay
reproducible too for the key's holder. On CUDA the same holds on one kind of device
(:mod:`unlearn_ops.sisa.devices`), but CPU and CUDA kernels differ: the weights record the
device kind they were trained on, and certificates compare like with like.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from unlearn_ops.params import Params
from unlearn_ops.sisa.checkpoints import CheckpointStore
from unlearn_ops.sisa.devices import device_kind, use_deterministic_torch
from unlearn_ops.sisa.dp import dp_calibration, dp_noise_key, noise_key_fingerprint, noise_seed
from unlearn_ops.sisa.hashing import derive_seed
from unlearn_ops.sisa.models import build_model
from unlearn_ops.sisa.shard_arrays import ShardArrays
from unlearn_ops.sisa.sharding import SLICE_COLUMN

if TYPE_CHECKING:
    import torch

__all__ = [
    "ShardColumns",
    "ShardModel",
    "StageProgress",
    "cached_stages",
    "shard_stage_keys",
    "train_shard",
    "weights_digest",
]

StageProgress = Callable[[int, int, int], None]
"""Called as `progress(shard_id, stage, num_stages)` after each trained stage."""


@dataclass(frozen=True)
class ShardColumns:
    """Column names and shape of the shard tables."""

    id_column: str
    label_column: str
    feature_columns: tuple[str, ...]
    num_classes: int


@dataclass
class ShardModel:
    """A trained shard: its stage keys, the final weights and what training did.

    Attributes:
        shard_id: the shard index.
        stage_keys: checkpoint key after each stage; the last names the served weights.
        state: the final weights (state_dict on the CPU).
        weights_hash: SHA-256 over the final weights (see :func:`weights_digest`).
        num_records: records the shard trained on.
        resumed_from_stage: first stage actually trained (R when all came from checkpoints).
        samples_processed: examples run through the model (epochs x stage sizes), the
            compute measure of the schedule.
        seconds: wall time of training.
        device: the kind of device it trained on (`cpu` or `cuda`).
        noise_key_fingerprint: under DP, the fingerprint of the key its noise came from
            (:func:`~unlearn_ops.sisa.dp.noise_key_fingerprint`); None without DP.
    """

    shard_id: int
    stage_keys: list[str]
    state: dict[str, torch.Tensor]
    weights_hash: str
    num_records: int
    resumed_from_stage: int
    samples_processed: int
    seconds: float = 0.0
    stages_trained: list[int] = field(default_factory=list)
    dp_epsilon: float | None = None
    device: str = "cpu"
    noise_key_fingerprint: str | None = None


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _serialize(state: dict[str, torch.Tensor]) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
    return buffer.getvalue()


def _deserialize(data: bytes) -> dict[str, torch.Tensor]:
    import torch

    state: dict[str, torch.Tensor] = torch.load(io.BytesIO(data), weights_only=True)
    return state


_INIT_LOCK = threading.Lock()


def _seed_dropout(model: torch.nn.Module, seed: int) -> None:
    """Give every SeededDropout of the model its own generator for this epoch."""
    import torch

    from unlearn_ops.sisa.layers import SeededDropout

    dropouts = [m for m in model.modules() if isinstance(m, SeededDropout)]
    for offset, module in enumerate(dropouts):
        device = next(model.parameters()).device
        module.generator = torch.Generator(device=device).manual_seed(seed + offset)


def _train_stage(
    model: torch.nn.Module,
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    params: Params,
    seeds: tuple[int, int, int],
    dp_noise: tuple[float, int] = (0.0, 0),
) -> int:
    """Train one stage from `model`'s current weights; returns examples processed.

    `data` is (features, labels, rows): the shard's tensors and the stage's row positions
    in their fixed order. Batches gather through `rows`, so the stage's rows are never
    copied out of the shard (issue 15: memory bounded by one copy of a shard). `dp_noise`
    is (noise multiplier, noise seed) under DP-SGD.
    """
    import torch

    features, labels, rows = data
    seed, shard_id, stage = seeds
    training = params.training
    if training.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=training.learning_rate,
            weight_decay=training.weight_decay,
            momentum=0.9,
        )
    loss_function = torch.nn.CrossEntropyLoss()
    count = len(rows)
    processed = 0
    forward: torch.nn.Module = model
    if training.dp.enabled:
        from unlearn_ops.sisa.dp import make_dp_stage

        forward, optimizer = make_dp_stage(
            model,
            optimizer,
            dp=training.dp,
            noise_multiplier=dp_noise[0],
            batch_size=training.batch_size,
            seed=dp_noise[1],
        )
    model.train()
    for epoch in range(training.epochs_per_stage):
        generator = torch.Generator().manual_seed(derive_seed(seed, shard_id, stage, epoch))
        _seed_dropout(model, derive_seed(seed, shard_id, stage, epoch, "dropout") >> 8)
        permutation = torch.randperm(count, generator=generator).to(features.device)
        for start in range(0, count, training.batch_size):
            batch = rows[permutation[start : start + training.batch_size]]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(forward(features[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            processed += len(batch)
    if forward is not model:
        # opacus's hooks off: the plain module goes on to the next stage.
        getattr(forward, "_close")()  # noqa: B009 - private in opacus 1.6, and the only way
    return processed


def _keyed_training_hash(
    params: Params, device: str, dp_noise: tuple[bytes, float] | None = None
) -> str:
    """What stage keys hash of the training: the params', the device kind off the CPU, and
    under DP the noise key's fingerprint and the noise multiplier.

    A stage trained on CUDA is not the CPU's stage (other kernels, other bits): it gets
    other keys, so that neither resumes from the other's checkpoints; nor does a DP stage
    whose noise came from another secret or at another scale (the multiplier is calibrated
    to the shard's whole schedule, so it changes with the shard's size: under DP a forget
    retrains its shards from the first stage). CPU keys without DP stay as they were
    before devices counted (a workspace's checkpoints keep their names).
    """
    kind = device_kind(device)
    dp = ""
    if dp_noise is not None:
        noise_key, sigma = dp_noise
        dp = f"@dp-{noise_key_fingerprint(noise_key)}-{sigma.hex()}"
    return params.training_hash() + ("" if kind == "cpu" else f"@{kind}") + dp


def shard_stage_keys(
    arrays: ShardArrays,
    *,
    shard_id: int,
    params: Params,
    device: str = "cpu",
    noise_key: bytes | None = None,
) -> list[str]:
    """The checkpoint key after each stage of the shard (the last names its weights).

    Under DP the keys name the noise key (`noise_key`, else `UNLEARN_OPS_DP_NOISE_KEY`) and
    the noise multiplier too.

    Raises:
        ConfigError: DP is on and no noise key is set.
    """
    dp_noise = None
    if params.training.dp.enabled:
        sigma, _ = dp_calibration(pd.DataFrame({SLICE_COLUMN: arrays.slices}), params)
        dp_noise = (dp_noise_key(noise_key), sigma)
    return arrays.stage_keys(
        shard_id=shard_id,
        num_slices=params.sisa.slices,
        training_hash=_keyed_training_hash(params, device, dp_noise),
    )


def cached_stages(keys: Sequence[str], store: CheckpointStore) -> int:
    """How many first stages `store` holds (training resumes from `keys[n - 1]`)."""
    resume = len(keys)
    while resume > 0 and not store.contains(keys[resume - 1]):
        resume -= 1
    return resume


def train_shard(
    table: pd.DataFrame | ShardArrays,
    *,
    shard_id: int,
    params: Params,
    columns: ShardColumns,
    store: CheckpointStore,
    device: str = "cpu",
    threads: int = 1,
    progress: StageProgress | None = None,
    noise_key: bytes | None = None,
) -> ShardModel:
    """Train (or resume) one shard through its R stages, saving a checkpoint after each.

    Resumes after the last stage whose key `store` holds: after a deletion in slice k that
    is stage k-1, so only stages k..R-1 run. With an empty store it trains from scratch.

    Args:
        table: the shard's records with `slice_id` (as written by `split_into_shards`), as
            a frame or as the arrays :func:`~unlearn_ops.sisa.shard_arrays.read_shard_arrays`
            reads from its file (the same weights and keys; the arrays hold it once).
        shard_id: the shard index (seeds the initial weights).
        params: the pipeline params.
        columns: column names and class count.
        store: where checkpoints are looked up and saved.
        device: `cpu` or `cuda` (see :func:`resolve_device`).
        threads: intra-op threads while training this shard.
        progress: called after each trained stage.
        noise_key: under DP, the secret the noise is drawn from (default:
            `UNLEARN_OPS_DP_NOISE_KEY`); each stage's noise is keyed by its checkpoint key.

    Returns:
        The trained shard, with the compute it used.

    Raises:
        ConfigError: DP is on and no noise key is set (nothing is trained).
    """
    import torch

    started = time.perf_counter()
    arrays = (
        table
        if isinstance(table, ShardArrays)
        else ShardArrays.from_frame(table, columns.id_column, columns.label_column)
    )
    num_stages = params.sisa.slices
    noise_key = dp_noise_key(noise_key) if params.training.dp.enabled else None
    keys = shard_stage_keys(
        arrays, shard_id=shard_id, params=params, device=device, noise_key=noise_key
    )
    resume = cached_stages(keys, store)
    # `resume` stages are cached: train stages resume..R-1.

    num_features = len(columns.feature_columns)
    use_deterministic_torch(threads, device)
    # The initial weights come from torch's global RNG: seed it and build under a lock, so
    # shards built in parallel threads never draw from each other's sequence.
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(params.seed, shard_id, "init"))
        model = build_model(params.model, num_features, columns.num_classes)
    if resume > 0:
        model.load_state_dict(_deserialize(store.load(keys[resume - 1])))
    model.to(device)
    processed = 0
    trained: list[int] = []
    noise_multiplier, epsilon = 0.0, None
    if params.training.dp.enabled:
        noise_multiplier, epsilon = dp_calibration(
            pd.DataFrame({SLICE_COLUMN: arrays.slices}), params
        )
    if resume < num_stages:
        # One tensor over the shard's values (no copy on the CPU), gathered batch by batch.
        all_features = torch.from_numpy(arrays.features(columns.feature_columns)).to(device)
        all_labels = torch.from_numpy(arrays.labels).to(device)
    for stage in range(resume, num_stages):
        rows = torch.from_numpy(arrays.stage_rows(stage)).to(device)
        if len(rows):
            processed += _train_stage(
                model,
                (all_features, all_labels, rows),
                params,
                (params.seed, shard_id, stage),
                (noise_multiplier, noise_seed(noise_key, keys[stage]) if noise_key else 0),
            )
        store.save(keys[stage], _serialize(model.state_dict()))
        trained.append(stage)
        if progress is not None:
            progress(shard_id, stage, num_stages)

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return ShardModel(
        shard_id=shard_id,
        stage_keys=keys,
        state=state,
        weights_hash=weights_digest(state),
        num_records=len(arrays),
        resumed_from_stage=resume,
        samples_processed=processed,
        seconds=time.perf_counter() - started,
        stages_trained=trained,
        dp_epsilon=epsilon,
        device=device_kind(device),
        noise_key_fingerprint=noise_key_fingerprint(noise_key) if noise_key else None,
    )


def load_state(data: bytes) -> dict[str, torch.Tensor]:
    """Weights saved by :func:`train_shard` (a checkpoint's bytes)."""
    return _deserialize(data)


def serialize_state(state: dict[str, torch.Tensor]) -> bytes:
    """Bytes of a state dict, as checkpoints and model files hold them."""
    return _serialize(state)

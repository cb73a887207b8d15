"""DP-SGD training of the shards (opacus, the `dp` extra): calibration, accounting, one stage.

With `training.dp.enabled` each stage trains through opacus with per-sample clipping and
Gaussian noise, calibrated so that the shard's whole schedule (all R stages) meets the
target (ε, δ) under the RDP accountant.

The noise of a stage is drawn from a secret the operator keeps (`UNLEARN_OPS_DP_NOISE_KEY`,
never released) keyed by the stage's checkpoint key, which names everything the stage
trained on. So a retrain is bit for bit the same for whoever holds the secret (the
exactness certificate still holds), while a stage that a forget retrains draws noise
independent of its parent's: seeded by (seed, shard, stage) alone, the same noise would
be added to both trajectories and cancel in their difference, leaving the forgotten
records' signal to an attacker who holds both versions (docs/PRIVACY_AUDIT.md). With
fresh noise the pair is two (ε, δ) releases, composed (:func:`dp_pair_epsilon`).
torch and opacus are imported inside.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from unlearn_ops.errors import ConfigError
from unlearn_ops.sisa.sharding import SLICE_COLUMN

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from unlearn_ops.params import DpParams, Params
    from unlearn_ops.settings import Settings

__all__ = [
    "dp_calibration",
    "dp_epsilon",
    "dp_noise_key",
    "dp_noise_multiplier",
    "dp_pair_epsilon",
    "dp_schedule",
    "make_dp_stage",
    "noise_key_fingerprint",
    "noise_seed",
    "settings_noise_key",
    "unsupported_dp_layers",
]


def settings_noise_key(settings: Settings) -> bytes | None:
    """The settings' DP noise key as bytes (`UNLEARN_OPS_DP_NOISE_KEY`), None when unset."""
    key = settings.dp_noise_key
    return key.get_secret_value().encode() if key is not None and key.get_secret_value() else None


def dp_noise_key(explicit: bytes | None = None) -> bytes:
    """The secret DP noise is drawn from: `explicit`, else `UNLEARN_OPS_DP_NOISE_KEY`.

    Raises:
        ConfigError: neither is set (DP training is refused without it: seeded noise that
            anyone with the params can replay protects nothing).
    """
    if explicit:
        return explicit
    from unlearn_ops.settings import Settings

    key = settings_noise_key(Settings())
    if key is None:
        raise ConfigError(
            "training.dp",
            [
                "DP-SGD needs a noise key: set UNLEARN_OPS_DP_NOISE_KEY to a secret kept by "
                "the operator (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
                "; the noise is drawn from it, and retraining bit for bit needs the same one"
            ],
        )
    return key


def noise_seed(noise_key: bytes, stage_key: str) -> int:
    """The 63-bit seed of a stage's DP noise: HMAC of its checkpoint key under the secret."""
    digest = hmac.new(noise_key, f"dp-noise\x1f{stage_key}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def noise_key_fingerprint(noise_key: bytes) -> str:
    """A short public name of the secret (in checkpoint keys: another secret, other noise)."""
    return hmac.new(noise_key, b"dp-noise-key fingerprint", hashlib.sha256).hexdigest()[:16]


def unsupported_dp_layers(model: torch.nn.Module) -> list[str]:
    """The model's layers that DP-SGD cannot train (opacus's validator), as `name: Type`.

    Linear and Conv2d layers (our MLP and CNN) are supported; BatchNorm is not (it mixes
    the samples of a batch, so per-sample gradients do not bound one record's influence).
    """
    from opacus.validators import ModuleValidator

    names = {id(module): name for name, module in model.named_modules()}
    unsupported = []
    for module in model.modules():
        if list(module.children()):
            continue
        if ModuleValidator.validate(module, strict=False):
            unsupported.append(f"{names[id(module)] or '(root)'}: {type(module).__name__}")
    return unsupported


def _rdp_epsilon(sigma: float, schedule: Sequence[tuple[float, int]], delta: float) -> float:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(sigma, rate, steps) for rate, steps in schedule if steps]
    return float(accountant.get_epsilon(delta=delta))


def dp_schedule(
    stage_sizes: Sequence[int], batch_size: int, epochs: int
) -> list[tuple[float, int]]:
    """(sample rate, steps) per SISA stage: stage j trains on slices 0..j, `epochs` times.

    A record of slice 0 takes part in every stage: composing all stages over-counts no
    one and is the bound for the most exposed record.
    """
    schedule = []
    for size in stage_sizes:
        if size:
            rate = min(1.0, batch_size / size)
            schedule.append((rate, epochs * math.ceil(size / batch_size)))
    return schedule


def dp_noise_multiplier(dp: DpParams, schedule: Sequence[tuple[float, int]]) -> float:
    """The smallest noise multiplier that keeps the whole schedule within (ε, δ) (RDP).

    Found by bisection to a relative width of 1e-6 (the accountant takes about 0.3 s a
    call); remembered per (ε, δ, schedule) for the process, since a shard's stage keys and
    its training both ask for it.

    Raises:
        ConfigError: no noise multiplier up to 1,000 reaches the target epsilon.
    """
    return _noise_multiplier(dp.epsilon, dp.delta, tuple(schedule))


@functools.lru_cache(maxsize=256)
def _noise_multiplier(
    epsilon: float, delta: float, schedule: tuple[tuple[float, int], ...]
) -> float:
    if not schedule:
        return 0.0
    low, high = 0.0, 1.0
    while _rdp_epsilon(high, schedule, delta) > epsilon:
        low, high = high, high * 2
        if high > 1000:
            raise ConfigError(
                "training.dp", [f"epsilon {epsilon} is out of reach; raise training.dp.epsilon"]
            )
    while high - low > 1e-6 * high:
        middle = (low + high) / 2
        if _rdp_epsilon(middle, schedule, delta) > epsilon:
            low = middle
        else:
            high = middle
    return high


def dp_epsilon(sigma: float, schedule: Sequence[tuple[float, int]], delta: float) -> float:
    """The epsilon the accountant gives the schedule at this noise multiplier."""
    return _rdp_epsilon(sigma, schedule, delta) if schedule else 0.0


def make_dp_stage(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    dp: DpParams,
    noise_multiplier: float,
    batch_size: int,
    seed: int,
) -> tuple[Any, Any]:
    """Wrap a stage's model and optimizer for DP-SGD with seeded noise.

    Batches are fixed-size slices of a seeded permutation (the training loop's own), not
    Poisson samples: the accountant's figure is the standard approximation that DP-SGD
    libraries report for shuffled batches. The noise comes from a generator seeded by
    `seed` (:func:`noise_seed`: secret, and new whenever the stage's data changes), so a
    shard's DP training is as reproducible as its ordinary training for the key's holder.

    Returns:
        (the wrapped module, the DP optimizer); call the module, then step the optimizer.

    Raises:
        ConfigError: a layer with parameters is not supported by opacus.
    """
    import torch
    from opacus.grad_sample import GradSampleModule
    from opacus.optimizers import DPOptimizer

    unsupported = unsupported_dp_layers(model)
    if unsupported:
        raise ConfigError("training.dp", [f"opacus cannot train layer {u}" for u in unsupported])
    # opacus's full backward hooks warn when the inputs need no gradient (ours never do):
    # expected, and harmless for per-sample gradients of the parameters.
    warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
    wrapped = GradSampleModule(model)
    dp_optimizer = DPOptimizer(
        optimizer,
        noise_multiplier=noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    return wrapped, dp_optimizer


def _shard_schedule(table: pd.DataFrame, params: Params) -> list[tuple[float, int]]:
    slices = table[SLICE_COLUMN].to_numpy()
    sizes = [int((slices <= stage).sum()) for stage in range(params.sisa.slices)]
    return dp_schedule(sizes, params.training.batch_size, params.training.epochs_per_stage)


def dp_calibration(table: pd.DataFrame, params: Params) -> tuple[float, float | None]:
    """(noise multiplier, epsilon) for the shard's whole schedule; (0, None) without DP."""
    dp = params.training.dp
    if not dp.enabled:
        return 0.0, None
    schedule = _shard_schedule(table, params)
    sigma = dp_noise_multiplier(dp, schedule)
    return sigma, dp_epsilon(sigma, schedule, dp.delta)


def dp_pair_epsilon(table: pd.DataFrame, params: Params) -> float | None:
    """The epsilon of a version and its retrained child together (None without DP).

    Their noise is independent (:func:`noise_seed`), so the pair is two runs of the
    schedule, composed under the same accountant; the shard's current (smaller) schedule
    counted twice bounds the parent's run too (fewer records: a higher sample rate).
    """
    dp = params.training.dp
    if not dp.enabled:
        return None
    schedule = _shard_schedule(table, params)
    return dp_epsilon(dp_noise_multiplier(dp, schedule), [*schedule, *schedule], dp.delta)

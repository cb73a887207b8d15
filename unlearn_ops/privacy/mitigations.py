"""Release mitigations of the pair-of-versions risk: when to release, what to serve, what to add.

Each is a switch of `params.yaml` (:class:`~unlearn_ops.params.ReleaseParams`,
:class:`~unlearn_ops.params.DpParams`) whose default keeps the behaviour before it:

- :func:`release_due`: hold a release until `release.min_batch` requests wait, or until
  the oldest one's legal deadline (`compliance.deadline_days`) forces it; batching mixes
  the deleted records in one parameter difference (Bertran et al. 2024, section 5);
- :func:`limit_outputs`: label-only, top-k or rounded probabilities in the served model
  (Chen et al., CCS 2021, section 6: label-only release defeats the difference attack);
- :func:`noise_state`: fresh Gaussian noise on released weights, seeded per release;
- DP-SGD training of the shards with opacus (the `dp` extra), seeded so that training
  stays reproducible, lives with training: :mod:`unlearn_ops.sisa.dp`.

numpy only at import; torch and opacus inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unlearn_ops.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from unlearn_ops.params import Params, ReleaseParams

__all__ = [
    "fresh_secret",
    "limit_outputs",
    "noise_seed",
    "noise_state",
    "noisy_model_files",
    "release_due",
    "release_tags",
]


def release_due(
    received_at: Sequence[datetime],
    now: datetime,
    *,
    min_batch: int,
    deadline_days: int,
    margin_days: float = 1.0,
) -> bool:
    """Whether the waiting requests should be released (drained) now.

    Args:
        received_at: when each waiting request was received (aware datetimes).
        now: the time of the decision.
        min_batch: release once at least this many requests wait.
        deadline_days: the legal deadline from a request to the version honouring it.
        margin_days: release this long before the oldest request's deadline, so that the
            retraining and the gates still finish in time.

    Returns:
        True when nothing is held: enough requests wait, or the oldest cannot wait longer.
        False when nothing waits.
    """
    if not received_at:
        return False
    if len(received_at) >= min_batch:
        return True
    oldest = min(received_at)
    return now >= oldest + timedelta(days=deadline_days) - timedelta(days=margin_days)


def limit_outputs(probabilities: np.ndarray, release: ReleaseParams) -> np.ndarray:
    """The class probabilities as `release.outputs` allows them to be served.

    `label`: one-hot of the predicted class; `top_k`: the k largest probabilities, zero
    elsewhere; `rounded`: each rounded to `release.decimals`; `probabilities`: unchanged.
    The predicted class is the same in every mode (ties broken by the lowest class, as
    `argmax` does), so accuracy is unchanged; only what an attacker can difference is.
    """
    scores = np.asarray(probabilities, dtype=np.float64)
    mode = release.outputs
    if mode == "probabilities":
        return scores
    predicted = scores.argmax(axis=1)
    if mode == "label":
        limited = np.zeros_like(scores)
        limited[np.arange(len(scores)), predicted] = 1.0
        return limited
    if mode == "top_k":
        k = min(release.top_k, scores.shape[1])
        # A stable sort on the negated scores keeps the lowest class first among ties.
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        limited = np.zeros_like(scores)
        rows = np.arange(len(scores))[:, None]
        limited[rows, order] = scores[rows, order]
        return limited
    return np.round(scores, release.decimals)


def fresh_secret() -> str:
    """A new secret for one release's weight noise (never stored with the version)."""
    return secrets.token_hex(32)


def noise_seed(version: str, secret: str) -> int:
    """The seed of one release's noise: a hash of the version and the release's secret."""
    digest = hashlib.sha256(f"unlearn.release-noise:{version}:{secret}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def noise_state(
    state: dict[str, torch.Tensor], sigma: float, *, version: str, secret: str
) -> dict[str, torch.Tensor]:
    """The weights with fresh Gaussian noise of standard deviation `sigma` added.

    The noise is drawn from a seed of (version, secret), and the secret must be fresh for
    every release (:func:`fresh_secret`): noise reused by two releases cancels exactly in
    their difference Δθ, which is the very channel the reconstruction attack reads
    (Bertran et al. 2024); a secret derived from the version alone would let anyone
    recompute and subtract it. The version in the seed keeps two releases apart even if
    a caller reused a secret by mistake.

    Raises:
        ConfigError: `sigma` is negative or `secret` is empty.
    """
    import torch

    if sigma < 0 or not math.isfinite(sigma):
        raise ConfigError("release.weight_noise", [f"must be a finite sigma >= 0, got {sigma}"])
    if not secret:
        raise ConfigError("release noise", ["needs a fresh secret per release"])
    generator = torch.Generator().manual_seed(noise_seed(version, secret))
    noisy: dict[str, torch.Tensor] = {}
    for name in sorted(state):
        tensor = state[name]
        if not torch.is_floating_point(tensor) or sigma == 0.0:
            noisy[name] = tensor.clone()
            continue
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
        noisy[name] = (tensor.double() + sigma * noise).to(tensor.dtype)
    return noisy


def noisy_model_files(
    model_files: dict[str, Path], sigma: float, *, version: str, directory: Path
) -> dict[str, Path]:
    """Copies of the shard weight files with fresh noise, for the registry to log.

    Only the released copies carry noise: the workspace keeps the trained weights, so the
    exactness certificate (which retrains and compares those) is unchanged. Each call
    draws a new secret (:func:`fresh_secret`), never stored: two releases never share noise.

    Args:
        model_files: artifact name -> file; `shard-*` entries are weight files.
        sigma: the noise's standard deviation (`release.weight_noise`).
        version: what identifies the release (the data revision and its requests).
        directory: where the noisy copies are written.
    """
    from unlearn_ops.sisa.training import load_state, serialize_state

    secret = fresh_secret()
    released = dict(model_files)
    directory.mkdir(parents=True, exist_ok=True)
    for name, path in model_files.items():
        if name.startswith("shard-"):
            state = noise_state(
                load_state(path.read_bytes()), sigma, version=f"{version}:{name}", secret=secret
            )
            copy = directory / path.name
            copy.write_bytes(serialize_state(state))
            released[name] = copy
    return released


def release_tags(params: Params, ensemble: Any) -> dict[str, str]:
    """The `release.*` and `privacy.dp_*` tags of a version; none by default.

    Keys as the registry takes them: it adds the `unlearn.` prefix (the version shows
    `unlearn.release.outputs`, `unlearn.privacy.dp_epsilon`, ...).

    Args:
        params: the version's params.
        ensemble: the :class:`~unlearn_ops.sisa.ensemble.SisaEnsemble` it serves (its
            shard tables give DP-SGD's schedule).
    """
    release = params.release
    tags: dict[str, str] = {}
    if release.min_batch > 1:
        tags["release.min_batch"] = str(release.min_batch)
    if release.outputs != "probabilities":
        detail = {"top_k": f":{release.top_k}", "rounded": f":{release.decimals}"}
        tags["release.outputs"] = release.outputs + detail.get(release.outputs, "")
    if release.weight_noise > 0:
        tags["release.weight_noise"] = repr(release.weight_noise)
    dp = params.training.dp
    if dp.enabled:
        from unlearn_ops.sisa.dp import dp_calibration, dp_pair_epsilon

        # Every shard is trained to the same target: report the largest the accountant gives.
        tables = [ensemble.read_shard(s) for s in ensemble.shard_ids]
        epsilons = [dp_calibration(table, params)[1] or 0.0 for table in tables]
        pairs = [dp_pair_epsilon(table, params) or 0.0 for table in tables]
        tags["privacy.dp_epsilon"] = f"{max(epsilons, default=0.0):.4g}"
        # A version and its retrained parent: independent noise, two releases composed.
        tags["privacy.dp_pair_epsilon"] = f"{max(pairs, default=0.0):.4g}"
        tags["privacy.dp_delta"] = f"{dp.delta:.3g}"
        tags["privacy.dp_max_grad_norm"] = repr(dp.max_grad_norm)
        tags["privacy.dp_accountant"] = "rdp (opacus), shuffled fixed-size batches"
    return tags

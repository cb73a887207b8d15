"""Shard model factories: a registry from names in params.yaml to torch modules.

Built in: `mlp` (hidden sizes from params) and `cnn` (conv blocks over a square image).
Add one with :func:`register_model`, or from another package through the
`unlearn_ops.models` entry point group (a callable `(ModelParams, num_features,
num_classes) -> torch.nn.Module`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from unlearn_ops.errors import ConfigError, UnknownModelError
from unlearn_ops.params import ModelParams

if TYPE_CHECKING:
    from torch import nn

__all__ = ["ModelFactory", "build_model", "register_model", "registered_models"]

ModelFactory = Callable[[ModelParams, int, int], "nn.Module"]

_FACTORIES: dict[str, ModelFactory] = {}


def register_model(name: str, factory: ModelFactory) -> None:
    """Make `factory` available as `model.name: <name>` in params.yaml."""
    _FACTORIES[name] = factory


def _entry_point_factories() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group="unlearn_ops.models")}


def registered_models() -> list[str]:
    """Names of every model factory: built in, registered, and from entry points."""
    return sorted(set(_FACTORIES) | set(_entry_point_factories()))


def build_model(params: ModelParams, num_features: int, num_classes: int) -> nn.Module:
    """A fresh, untrained model (seed the torch RNG before calling for a fixed init).

    Raises:
        UnknownModelError: no factory of that name.
    """
    factory = _FACTORIES.get(params.name)
    if factory is None:
        found = _entry_point_factories().get(params.name)
        if found is None:
            raise UnknownModelError(params.name, registered_models())
        factory = found.load()
    return factory(params, num_features, num_classes)


def _seeded_dropout(rate: float) -> nn.Module:
    from unlearn_ops.sisa.layers import SeededDropout

    return SeededDropout(rate)


def _mlp(params: ModelParams, num_features: int, num_classes: int) -> nn.Module:
    from torch import nn

    layers: list[nn.Module] = []
    width = num_features
    for hidden in params.hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if params.dropout:
            layers.append(_seeded_dropout(params.dropout))
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _image_shape(params: ModelParams, num_features: int) -> tuple[int, int, int]:
    if params.image_shape is not None:
        shape = params.image_shape
    else:
        side = math.isqrt(num_features)
        if side * side != num_features:
            raise ConfigError(
                "params.yaml",
                [
                    f"model.image_shape: {num_features} features are not a square image; "
                    "give model.image_shape as [channels, height, width]"
                ],
            )
        shape = (1, side, side)
    if math.prod(shape) != num_features:
        raise ConfigError(
            "params.yaml",
            [f"model.image_shape {list(shape)} does not hold {num_features} features"],
        )
    return shape


def _cnn(params: ModelParams, num_features: int, num_classes: int) -> nn.Module:
    from torch import nn

    channels, height, width = _image_shape(params, num_features)
    layers: list[nn.Module] = [nn.Unflatten(1, (channels, height, width))]
    for out_channels in params.channels:
        layers += [
            nn.Conv2d(channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        channels, height, width = out_channels, height // 2, width // 2
    layers.append(nn.Flatten())
    if params.dropout:
        layers.append(_seeded_dropout(params.dropout))
    hidden = params.hidden_sizes[0] if params.hidden_sizes else 0
    if hidden:
        layers += [nn.Linear(channels * height * width, hidden), nn.ReLU()]
        layers.append(nn.Linear(hidden, num_classes))
    else:
        layers.append(nn.Linear(channels * height * width, num_classes))
    return nn.Sequential(*layers)


register_model("mlp", _mlp)
register_model("cnn", _cnn)

"""The one small interface every approximate unlearning method implements, and its registry.

A method is a function `(model, data, options, seed) -> UnlearnOutcome`. It receives the
trained model (it may edit it in place or return a new one), the retained and forgotten
examples as tensors, its options merged over its paper's defaults, and a seed from which it
must draw everything random, so that a method run twice on the CPU gives the same weights.
It reports how many gradient steps it took (the cost compared with retraining's steps).
The built-in methods register themselves when the package `unlearn_ops.approx` is imported
(which importing this module does first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unlearn_ops.errors import UnknownMethodError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "MethodFunction",
    "UnlearnData",
    "UnlearnOutcome",
    "method_defaults",
    "register_method",
    "registered_methods",
    "run_method",
]


@dataclass(frozen=True)
class UnlearnData:
    """What a method may look at: retained and forgotten examples (features, labels).

    Features are float32 `(n, num_features)` tensors, labels int64 `(n,)`, both on the CPU.
    """

    retained_x: torch.Tensor
    retained_y: torch.Tensor
    forgotten_x: torch.Tensor
    forgotten_y: torch.Tensor
    num_classes: int


@dataclass
class UnlearnOutcome:
    """The edited model and what it cost."""

    model: nn.Module
    gradient_steps: int
    details: dict[str, float] = field(default_factory=dict)


MethodFunction = Callable[["nn.Module", UnlearnData, Mapping[str, Any], int], UnlearnOutcome]


@dataclass(frozen=True)
class _Method:
    function: MethodFunction
    defaults: Mapping[str, Any]


_METHODS: dict[str, _Method] = {}


def register_method(name: str, function: MethodFunction, defaults: Mapping[str, Any]) -> None:
    """Make `function` available as method `name`, with its paper's hyperparameters as defaults."""
    _METHODS[name] = _Method(function, dict(defaults))


def registered_methods() -> list[str]:
    """Names of every registered method."""
    return sorted(_METHODS)


def method_defaults(name: str) -> dict[str, Any]:
    """The default options of method `name`.

    Raises:
        UnknownMethodError: no method of that name.
    """
    return dict(_lookup(name).defaults)


def run_method(
    name: str,
    model: nn.Module,
    data: UnlearnData,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> UnlearnOutcome:
    """Run method `name` with `options` merged over its defaults.

    Raises:
        UnknownMethodError: no method of that name, or an option the method does not take.
    """
    method = _lookup(name)
    unknown = sorted(set(options or {}) - set(method.defaults))
    if unknown:
        takes = sorted(method.defaults)
        problem = f"unknown options {unknown}; it takes {takes}"
        raise UnknownMethodError(name, registered_methods(), problem)
    merged = {**method.defaults, **(options or {})}
    return method.function(model, data, merged, seed)


def _lookup(name: str) -> _Method:
    method = _METHODS.get(name)
    if method is None:
        raise UnknownMethodError(name, sorted(_METHODS))
    return method

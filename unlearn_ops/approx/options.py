"""Checks of the numeric options of the approximate methods: one clear error, nothing run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from unlearn_ops.errors import UnknownMethodError

__all__ = ["check_fraction", "check_positive"]


def _number(method: str, options: Mapping[str, Any], key: str) -> float:
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnknownMethodError(method, [], f"option {key}={value!r} is not a number")
    return float(value)


def check_positive(method: str, options: Mapping[str, Any], key: str) -> float:
    """`options[key]` as a float, which must be a number above 0.

    Raises:
        UnknownMethodError: not a number, or not above 0.
    """
    value = _number(method, options, key)
    if not value > 0:
        raise UnknownMethodError(method, [], f"option {key}={value!r} must be above 0")
    return value


def check_fraction(method: str, options: Mapping[str, Any], key: str) -> float:
    """`options[key]` as a float, which must lie in (0, 1].

    Raises:
        UnknownMethodError: not a number, or outside (0, 1].
    """
    value = _number(method, options, key)
    if not 0.0 < value <= 1.0:
        raise UnknownMethodError(method, [], f"option {key}={value!r} must lie in (0, 1]")
    return value

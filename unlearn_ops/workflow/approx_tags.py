"""Reading the tags of provisional versions (issue 14): pure, so serving and compliance use it.

See :mod:`unlearn_ops.workflow.approx_versions` for what writes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearn_ops.serving.provenance import parse_request_list

if TYPE_CHECKING:
    from unlearn_ops.serving.versions import VersionInfo

__all__ = [
    "APPROXIMATE_REQUESTS_TAG",
    "approximate_requests",
    "describe_exactness",
    "exactly_honoured",
    "is_provisional",
    "superseded_by",
]

APPROXIMATE_REQUESTS_TAG = "approximate_requests"


def approximate_requests(version: VersionInfo) -> list[str]:
    """The requests `version` honours only approximately (empty for an exact version)."""
    return parse_request_list(version.tag(APPROXIMATE_REQUESTS_TAG))


def is_provisional(version: VersionInfo) -> bool:
    """Whether `version` was made by an approximate method (`unlearn.provisional=true`)."""
    return version.tag("provisional") == "true"


def superseded_by(version: VersionInfo) -> str | None:
    """The exact version that replaced a provisional one, or None."""
    return version.tag("superseded_by") or None


def exactly_honoured(version: VersionInfo) -> list[str]:
    """The requests `version` may still be served for: all it honours, unless superseded.

    A provisional version honours its approximate requests until the exact retrain is
    served; then only its exact ones (it still holds traces of the others' records).
    """
    if superseded_by(version) is None:
        return list(version.honoured_requests)
    approximate = set(approximate_requests(version))
    return [r for r in version.honoured_requests if r not in approximate]


def describe_exactness(version: VersionInfo) -> str | None:
    """A provisional or exact version in plain words; None for a version of a SISA workspace."""
    if is_provisional(version):
        method = version.tag("method") or "?"
        requests = ", ".join(approximate_requests(version)) or "-"
        replaced = superseded_by(version)
        if replaced is not None:
            return (
                f"provisional (approximate, {method}), superseded by exact version {replaced}: "
                f"it no longer counts as honouring {requests}"
            )
        return (
            f"PROVISIONAL: honours {requests} only approximately ({method}); "
            "the exact retrain is pending"
        )
    if version.tag("exact") == "true":
        return "exact retrain of a monolithic model"
    return None

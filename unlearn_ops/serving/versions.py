"""Registered versions and the alias names that say which one is served.

A version is what the model registry holds for one registered ensemble: its number, run,
description and `unlearn.*` tags. Aliases, never stages: `champion` is served, `previous`
is the champion before it (the default rollback target). These types belong to the core;
the registry adapter (:mod:`unlearn_ops.adapters.mlflow.registry`) builds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn_ops.canonical import json_ready
from unlearn_ops.serving.provenance import TAG_PREFIX, VersionProvenance, parse_request_list

__all__ = [
    "CHAMPION",
    "PREVIOUS",
    "DeletedVersion",
    "NewVersion",
    "ServedShards",
    "VersionInfo",
    "schema_example",
]

CHAMPION = "champion"
PREVIOUS = "previous"


@dataclass(frozen=True)
class VersionInfo:
    """A registered version, as the CLI shows it."""

    version: str
    run_id: str
    created_at: int
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def tag(self, key: str, default: str = "") -> str:
        """An `unlearn.*` tag by its short key."""
        return self.tags.get(f"{TAG_PREFIX}{key}", default)

    @property
    def honoured_requests(self) -> list[str]:
        """Every request id this version honours."""
        return parse_request_list(self.tag("honoured_requests"))

    @property
    def request_ids(self) -> list[str]:
        """The requests this version was made for."""
        return parse_request_list(self.tag("request_ids"))

    @property
    def gates_passed(self) -> bool:
        """Whether its gates passed."""
        return self.tag("gates_passed") == "true"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: the fields, tags sorted by key."""
        return {**json_ready(self), "tags": dict(sorted(self.tags.items()))}


@dataclass(frozen=True)
class NewVersion:
    """What a registry's `log_version` registers: one trained ensemble and its provenance.

    Attributes:
        provenance: tags and provenance.json.
        description: the version's description.
        model_files: artifacts of the pyfunc model (`shard-000`..., `ensemble`, `params`).
        training_frame: the training table (logged as the run's dataset input).
        dataset_source: a real path or URL of the training data (the shard folder).
        params: flat params to log on the run.
        metrics: metrics to log on the run.
        signature_frames: (input example, output) used to infer the model signature;
            the example is never a record (see :func:`schema_example`).
    """

    provenance: VersionProvenance
    description: str
    model_files: Mapping[str, Path]
    training_frame: Any
    dataset_source: str
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    signature_frames: tuple[Any, Any] | None = None


@dataclass(frozen=True)
class ServedShards:
    """What a version's ensemble computes, named by content rather than loaded.

    Two shard models with the same weights file and model params compute the same outputs,
    so a version's held-out outputs can come from the cache of the workspace's own shards
    (:mod:`unlearn_ops.workflow.held_out_outputs`) instead of loading the version.

    Attributes:
        version: the version's number.
        digests: SHA-256 of each shard's weights file as served, in shard order.
        params_text: the version's params file as registered (its model family and
            aggregation are what turn the shards' weights into its scores).
    """

    version: str
    digests: tuple[str, ...]
    params_text: str


def schema_example(features: Any) -> Any:
    """One row of zeros with the columns and dtypes of `features` (a pandas frame).

    Every version carries an input example (MLflow keeps it beside the model, and infers
    the signature from it). It must not be a record: a version outlives the deletion of
    any of its rows, and neither purge nor the scan looks inside the example.
    """
    import numpy as np
    import pandas as pd

    return pd.DataFrame({c: np.zeros(1, dtype=features[c].dtype) for c in features.columns})


@dataclass(frozen=True)
class DeletedVersion:
    """A version deleted for good by a registry's `delete_version`.

    Attributes:
        version: the version number.
        run_id: its run (deleted with its artifacts).
        model_id: its logged model (deleted with its artifacts).
        artifact_locations: the artifact folders emptied.
        hard: whether run and logged model were removed from the store for good
            (`mlflow gc`); soft-deleted only when the store is a tracking server.
    """

    version: str
    run_id: str
    model_id: str
    artifact_locations: tuple[str, ...]
    hard: bool

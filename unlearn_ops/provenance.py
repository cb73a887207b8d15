"""Provenance of a model version: the `unlearn.*` tags and the plain-words description.

Pure: builds strings from what a flow did. The registry adapter writes them to MLflow, where
the UI then shows, for any version, which deletions it honours and where its data came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["TAG_PREFIX", "VersionProvenance", "describe_version", "parse_request_list"]

TAG_PREFIX = "unlearn."
# Model version tag values may hold 100,000 characters; keep the cumulative list well below.
_MAX_REQUEST_LIST_CHARS = 90_000


@dataclass(frozen=True)
class VersionProvenance:
    """Everything a model version records about how it was made.

    Attributes:
        kind: `train` (from scratch), `forget` (retrained affected shards), `replay`
            (deletions replayed onto an older version) or `repro` (registered by the
            `register` stage of `dvc repro`, outside the flows).
        request_ids: the requests this version was made for (a batch may hold several).
        honoured_request_ids: every request honoured so far, cumulative, oldest first.
        parent_version: the version this one was derived from (None for the first).
        git_sha: commit of params, dvc.lock and ledger for this version.
        data_md5: DVC md5 of the shard directory.
        shard_md5s: md5 of each shard file.
        shards_retrained: the shards that trained (all for `train`).
        first_stages: per retrained shard, the first stage that ran again.
        records_forgotten: records removed for this version.
        training_hash: hash of the params that determine the weights.
        seed: the seed.
        weights: SHA-256 of each shard's weights (what `verify` recomputes).
        gates: gate results ({"data": {...}, "metric": {...}}).
        timings: seconds per phase.
        accuracy: held-out accuracy.
    """

    kind: Literal["train", "forget", "replay", "repro"]
    request_ids: tuple[str, ...]
    honoured_request_ids: tuple[str, ...]
    parent_version: str | None
    git_sha: str
    data_md5: str
    shard_md5s: Mapping[int, str]
    shards_retrained: tuple[int, ...]
    first_stages: Mapping[int, int]
    records_forgotten: int
    training_hash: str
    seed: int
    weights: Mapping[int, str]
    gates: Mapping[str, Any]
    timings: Mapping[str, float]
    accuracy: float
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def gates_passed(self) -> bool:
        """Every gate passed."""
        return all(bool(result.get("passed")) for result in self.gates.values())

    def tags(self) -> dict[str, str]:
        """The `unlearn.*` tags of the model version (all values are strings)."""
        honoured = json.dumps(list(self.honoured_request_ids))
        if len(honoured) > _MAX_REQUEST_LIST_CHARS:
            honoured = json.dumps(["(list too long: see provenance.json of the run)"])

        def dumps(value: Any) -> str:
            return json.dumps(value, sort_keys=True, separators=(",", ":"))

        tags = {
            "kind": self.kind,
            "request_ids": dumps(list(self.request_ids)),
            "honoured_requests": honoured,
            "honoured_count": str(len(self.honoured_request_ids)),
            "parent_version": self.parent_version or "",
            "git_sha": self.git_sha,
            "data_md5": self.data_md5,
            "shard_md5s": dumps({str(k): v for k, v in self.shard_md5s.items()}),
            "shards_retrained": dumps(list(self.shards_retrained)),
            "first_stages": dumps({str(k): v for k, v in self.first_stages.items()}),
            "records_forgotten": str(self.records_forgotten),
            "params_hash": self.training_hash,
            "seed": str(self.seed),
            "weights": dumps({str(k): v for k, v in self.weights.items()}),
            "gates": dumps(self.gates),
            "gates_passed": str(self.gates_passed).lower(),
            "timings": dumps({k: round(v, 3) for k, v in self.timings.items()}),
            "accuracy": f"{self.accuracy:.6f}",
            **self.extra,
        }
        return {f"{TAG_PREFIX}{key}": value for key, value in tags.items()}

    def to_dict(self) -> dict[str, Any]:
        """The full provenance, JSON-ready (logged as `provenance.json` on the run)."""
        return {
            "kind": self.kind,
            "request_ids": list(self.request_ids),
            "honoured_request_ids": list(self.honoured_request_ids),
            "parent_version": self.parent_version,
            "git_sha": self.git_sha,
            "data_md5": self.data_md5,
            "shard_md5s": {str(k): v for k, v in self.shard_md5s.items()},
            "shards_retrained": list(self.shards_retrained),
            "first_stages": {str(k): v for k, v in self.first_stages.items()},
            "records_forgotten": self.records_forgotten,
            "training_hash": self.training_hash,
            "seed": self.seed,
            "weights": {str(k): v for k, v in self.weights.items()},
            "gates": dict(self.gates),
            "timings": dict(self.timings),
            "accuracy": self.accuracy,
        }


def _shard_list(shards: Sequence[int]) -> str:
    names = [str(s) for s in shards]
    if len(names) <= 1:
        return f"shard {''.join(names)}"
    return f"shards {', '.join(names[:-1])} and {names[-1]}"


def describe_version(provenance: VersionProvenance, total_shards: int) -> str:
    """The model version's description, in plain words, for the MLflow UI."""
    parent = (
        f" Derived from version {provenance.parent_version}." if provenance.parent_version else ""
    )
    if provenance.kind == "train":
        head = f"Trained from scratch on all {total_shards} shards."
    elif provenance.kind == "repro":
        head = (
            f"Registered by `dvc repro` from the workspace's {total_shards} shards as they "
            "are (outside the flows: no request)."
        )
    else:
        requests = ", ".join(provenance.request_ids)
        stages = sorted(set(provenance.first_stages.values()))
        from_stage = (
            f" from slice {stages[0]}" if len(stages) == 1 else " from their first affected slice"
        )
        verb = "Forgets" if provenance.kind == "forget" else "Replays deletions for"
        retrained = (
            f"{_shard_list(provenance.shards_retrained)} retrained{from_stage}"
            if provenance.shards_retrained
            else "no shard retrained (held-out records only)"
        )
        head = f"{verb} request {requests}: {provenance.records_forgotten} records, {retrained}."
    gates = "passed" if provenance.gates_passed else "FAILED"
    return (
        f"{head}{parent} Data: git {provenance.git_sha[:12]}, DVC md5 {provenance.data_md5}. "
        f"Held-out accuracy {provenance.accuracy:.4f}; gates {gates}. "
        f"Honours {len(provenance.honoured_request_ids)} deletion request(s)."
    )


def parse_request_list(value: str | None) -> list[str]:
    """The request ids of an `unlearn.request_ids` or `unlearn.honoured_requests` tag."""
    if not value:
        return []
    try:
        loaded = json.loads(value)
    except json.JSONDecodeError:
        return []
    return [str(v) for v in loaded] if isinstance(loaded, list) else []

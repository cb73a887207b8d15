"""Provenance of a model version: the `unlearn.*` tags and the plain-words description.

Pure: builds strings from what a flow did. The registry adapter writes them to MLflow, where
the UI then shows, for any version, which deletions it honours and where its data came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from unlearn_ops.canonical import canonical_text

__all__ = [
    "TAG_PREFIX",
    "VersionProvenance",
    "describe_version",
    "parse_request_list",
    "ui_page_fragment",
    "version_page_link",
]

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
        approximate_method: the approximate unlearning method that made a provisional
            version (issue 14; no shard retrained), None for every exact version. Its
            tags (`unlearn.method`, ...) are written by the approximate path itself.
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
    approximate_method: str | None = None

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
            return canonical_text(value, ascii_only=True)

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
            "gates": _gates_tag(self.gates, dumps),
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
            "approximate_method": self.approximate_method,
        }

    def artifact_dict(self) -> dict[str, Any]:
        """What `provenance.json` holds: :meth:`to_dict` less what the tags hold whole.

        The gate results and the cumulative list of honoured requests are version tags
        already; the file repeats them only when a tag had to shorten them (issue 15: each
        version's metadata was mostly these, twice). `in_tags` names the tags that hold
        the keys left out, so the file and the tags together are always the whole.
        """
        full = self.to_dict()
        tags = self.tags()
        in_tags = {}
        if tags[f"{TAG_PREFIX}gates"] == canonical_text(self.gates, ascii_only=True):
            in_tags["gates"] = f"{TAG_PREFIX}gates"
        if parse_request_list(tags[f"{TAG_PREFIX}honoured_requests"]) == list(
            self.honoured_request_ids
        ):
            in_tags["honoured_request_ids"] = f"{TAG_PREFIX}honoured_requests"
        for key in in_tags:
            del full[key]
        return {**full, "in_tags": in_tags}


# MLflow truncates tag values past 8,000 characters (into invalid JSON): keep below that.
_MAX_GATES_TAG_CHARS = 7_900


def _gates_tag(gates: Mapping[str, Any], dumps: Callable[[Any], str]) -> str:
    """The gate results as a tag: whole when short; else without the observed values, and
    at last only the failed outcomes (the whole results are in the run's provenance.json)."""
    text = dumps(gates)
    if len(text) <= _MAX_GATES_TAG_CHARS:
        return text

    def trimmed(keep: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, gate in gates.items():
            if not isinstance(gate, Mapping):
                result[name] = gate
                continue
            outcomes = [o for o in gate.get("outcomes", []) if isinstance(o, Mapping)]
            kept = [{k: v for k, v in o.items() if k != "observed"} for o in outcomes if keep(o)]
            result[name] = {
                **{k: v for k, v in gate.items() if k != "outcomes"},
                "outcomes": kept,
                "outcomes_omitted": len(outcomes) - len(kept),
            }
        return result

    text = dumps(trimmed(lambda outcome: True))
    if len(text) <= _MAX_GATES_TAG_CHARS:
        return text
    text = dumps(trimmed(lambda outcome: not outcome.get("success", False)))
    if len(text) <= _MAX_GATES_TAG_CHARS:
        return text
    return dumps(
        {
            name: {"passed": bool(g.get("passed"))} if isinstance(g, Mapping) else g
            for name, g in gates.items()
        }
    )


def _shard_list(shards: Sequence[int]) -> str:
    names = [str(s) for s in shards]
    if len(names) <= 1:
        return f"shard {''.join(names)}"
    return f"shards {', '.join(names[:-1])} and {names[-1]}"


def ui_page_fragment(model_name: str, version: str | None = None) -> str:
    """The MLflow UI's route to a model version's page, or to the model's.

    The UI is a hash-routed single-page app: MLflow 3.17 routes a version page at
    `#/models/:modelName/versions/:version`, the name URL-encoded. A link to the fragment
    alone works on whatever host and port serves the page that holds it.
    """
    page = f"#/models/{quote(model_name, safe='')}"
    return page if version is None else f"{page}/versions/{version}"


def version_page_link(model_name: str, version: str) -> str:
    """A markdown link to a model version's page in the MLflow UI."""
    return f"[version {version}]({ui_page_fragment(model_name, version)})"


def describe_version(
    provenance: VersionProvenance, total_shards: int, model_name: str | None = None
) -> str:
    """The model version's description, in plain words, for the MLflow UI.

    Args:
        provenance: what the version records.
        total_shards: S, the number of shards of the ensemble.
        model_name: the registered model; when given, the parent version is a markdown
            link to its page (the UI renders descriptions as markdown).
    """
    parent = ""
    if provenance.parent_version:
        parent_name = (
            version_page_link(model_name, provenance.parent_version)
            if model_name
            else f"version {provenance.parent_version}"
        )
        parent = f" Derived from {parent_name}."
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
        if provenance.approximate_method:
            retrained = (
                f"forgotten approximately by {provenance.approximate_method}, no retraining "
                "(provisional until the exact retrain)"
            )
        elif provenance.shards_retrained:
            retrained = f"{_shard_list(provenance.shards_retrained)} retrained{from_stage}"
        else:
            retrained = "no shard retrained (held-out records only)"
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

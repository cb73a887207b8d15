"""Data revisions: what a model version was trained from, and recording one.

A revision is a commit of the workspace's lineage (git + DVC by default) that holds the
params, `dvc.lock`, the ledger and the shard files a version trained on; every version
points at one, and a git tag per request marks the revision that forgot its records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unlearn_ops.deletion.requests import ForgetRequest

if TYPE_CHECKING:
    from unlearn_ops.workflow.workspace import Workspace

__all__ = [
    "FEDERATION_FILES",
    "REGISTER_STAGE",
    "VERSIONED_FILES",
    "DataRevision",
    "mark_applied",
    "record_federation",
    "record_revision",
    "record_workspace_revision",
    "request_tag",
]

# The small files a revision versions as text (git), beside the pointers to DVC's outputs.
VERSIONED_FILES = (
    ".gitignore",
    ".dvcignore",
    "params.yaml",
    "dvc.yaml",
    "dvc.lock",
    "forgotten.json",
    "subjects.json",
    "ledger.jsonl",
    "metrics.json",
    "registry.json",
    "models",
    "data/.gitignore",
)


@dataclass(frozen=True)
class DataRevision:
    """What a model version was trained from.

    Attributes:
        git_sha: the commit that holds params, dvc.lock and the ledger.
        shards_md5: DVC's md5 of the `data/shards` directory.
        shard_md5s: md5 of each shard file (DVC's hash of that file), by shard id.
        tags: the git tags of the requests, if any.
    """

    git_sha: str
    shards_md5: str
    shard_md5s: dict[int, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "git_sha": self.git_sha,
            "shards_md5": self.shards_md5,
            "shard_md5s": {str(k): v for k, v in sorted(self.shard_md5s.items())},
            "tags": list(self.tags),
        }


def request_tag(request_id: str) -> str:
    """The git tag that marks the data revision of a request."""
    return f"unlearn/forget/{request_id}"


# What a federation's revision commits (small files; the round checkpoints stay out).
FEDERATION_FILES = (
    "federation/federation.json",
    "federation/served.json",
    "ledger.jsonl",
    "params.yaml",
)

# The pipeline stage whose output registering a version changes (`registry.json`).
REGISTER_STAGE = "register"


def record_workspace_revision(workspace: Workspace, message: str) -> str:
    """Record the workspace as it is now, whatever it keeps; the head sha.

    A federation commits its bookkeeping
    (:func:`record_federation`); a SISA workspace records a
    data revision (:func:`record_revision`). For the steps that change no data but must be
    committed: a rollback, a purge.
    """
    if workspace.is_federation:
        return record_federation(workspace, message)
    return record_revision(workspace, message).git_sha


def record_federation(workspace: Workspace, message: str, tags: Sequence[str] = ()) -> str:
    """Commit a federation's bookkeeping (:data:`FEDERATION_FILES`), tag it; the head sha.

    A federation's lineage: its membership (keyed hashes, removals), served groups, ledger
    and params; no DVC data (the clients' tables stay at their sites, the round
    checkpoints in the workspace).
    """
    return workspace.lineage().record_files(message, FEDERATION_FILES, tags=tags)


def record_revision(
    workspace: Workspace,
    message: str,
    requests: Sequence[ForgetRequest] = (),
    *,
    stages: Sequence[str] = (),
) -> DataRevision:
    """`dvc commit` + git commit + a tag per request: the revision a version trains from.

    `stages`: the only pipeline stages whose outputs changed since the last revision
    (e.g. :data:`REGISTER_STAGE` once a version is registered); empty: every stage.
    """
    from unlearn_ops.workflow.dvc_pipeline import sync_dvc_yaml

    ensemble = workspace.ensemble
    # The pipeline versioned beside the data names the shards that exist (S may have been
    # edited in params.yaml since `init` rendered dvc.yaml).
    sync_dvc_yaml(workspace.root, workspace.params)
    revision = workspace.lineage().record_revision(
        message,
        tags=[request_tag(r.request_id) for r in requests],
        shard_ids=ensemble.shard_ids,
        stages=stages,
    )
    # `dvc commit` copies the data files into its cache and back: same bytes, new times.
    data_files = [ensemble.shard_path(s) for s in ensemble.shard_ids] + [ensemble.holdout_path]
    ensemble.record_index.restamp(data_files)
    return revision


def mark_applied(
    workspace: Workspace, requests: Sequence[ForgetRequest], revision: DataRevision
) -> None:
    """Ledger: the requests' records are gone from the data at `revision`."""
    for request in requests:
        workspace.ledger.append("applied", request.request_id, **revision.to_dict())

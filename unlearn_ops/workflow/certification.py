"""Certifying a registered version: its shards retrained from scratch, bit for bit.

Needs nothing of the workspace's current state: the version's params and shard files are
read as of its own data revision (through the lineage, from the DVC cache or remote).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from unlearn_ops.errors import FederationError, LineageError
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from unlearn_ops.sisa.verification import Certificate, ScratchMapper
    from unlearn_ops.workflow.ports import DataLineage

__all__ = ["certify_version"]


def certify_version(
    workspace: Workspace,
    version: str,
    shard_ids: Sequence[int] | None = None,
    mapper: ScratchMapper | None = None,
) -> Certificate:
    """The exactness certificate of a registered version, from its own data revision.

    Reads the version's params and shard files as of its git commit (through DVC), trains
    the shards from scratch (through `mapper` when given: a task runner) on the kind of
    device they were trained on, and compares with the weights hashes the version recorded.

    Raises:
        VersionNotFoundError: no such version (VersionPurgedError: purged).
        FederationError: a federated version (`unlearn-ops federation certify` is its).
        LineageError: the revision's data is no longer in the DVC cache or remote.
        DeviceMismatchError: the version was trained on another kind of device than the
            settings' (nothing is trained).
        NoiseKeyMismatchError: under DP, the version's noise came from another key than
            the settings' (nothing is trained).
    """
    import io

    import pandas as pd
    import yaml

    from unlearn_ops.params import Params
    from unlearn_ops.sisa.training import ShardColumns
    from unlearn_ops.sisa.verification import certify_tables

    info = workspace.find_version(version)
    if info.tag("engine") == "flower":
        raise FederationError(
            f"verify version {info.version}",
            "it is a federated model, whose groups are certified on the deployment",
            f"`unlearn-ops federation certify {info.version} --flower-home HOME`",
        )
    lineage = workspace.lineage()
    sha = info.tag("git_sha")
    weights = json.loads(info.tag("weights") or "{}")
    expected_md5s = json.loads(info.tag("shard_md5s") or "{}")
    params = Params.from_mapping(
        yaml.safe_load(lineage.read_git_file(sha, "params.yaml")),
        source=f"params.yaml at {sha[:12]}",
    )
    manifest = json.loads(lineage.read_at_revision("ensemble.json", sha))
    columns = ShardColumns(
        id_column=manifest["id_column"],
        label_column=manifest["label_column"],
        feature_columns=tuple(manifest["feature_columns"]),
        num_classes=int(manifest["num_classes"]),
    )
    ids = range(params.sisa.shards) if shard_ids is None else sorted(set(shard_ids))
    tables = {}
    for shard_id in ids:
        data = lineage.read_at_revision(f"data/shards/shard-{shard_id:03d}.parquet", sha)
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if expected_md5s.get(str(shard_id), digest) != digest:
            raise LineageError(
                f"verifying version {info.version}",
                f"shard {shard_id} at git {sha[:12]} is not the data the version recorded "
                "(it was registered outside a flow, before its data was committed)",
            )
        tables[shard_id] = pd.read_parquet(io.BytesIO(data))
    return certify_tables(
        tables,
        params=params,
        columns=columns,
        settings=workspace.settings,
        served={
            s: {"weights_hash": weights.get(str(s), ""), **_trained(lineage, sha, s)} for s in ids
        },
        mapper=mapper,
    )


def _trained(lineage: DataLineage, sha: str, shard_id: int) -> dict[str, str | None]:
    """How a shard of the revision was trained (its models/ JSON in git): the device kind
    and, under DP, the fingerprint of the noise key.

    Revisions from before devices were recorded (or without the file) trained on the CPU.
    """
    try:
        info = json.loads(lineage.read_git_file(sha, f"models/shard-{shard_id:03d}.json"))
    except (LineageError, json.JSONDecodeError):
        info = {}
    return {
        "device": str(info.get("device") or "cpu"),
        "dp_noise_key_fingerprint": info.get("dp_noise_key_fingerprint"),
    }

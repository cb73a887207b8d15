"""Data revisions: recorded through the workspace's lineage, tagged per request."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.workflow.conftest import new_root, open_with_fakes, request, shard_records
from unlearn_ops.workflow.batch import apply_batch, receive_requests
from unlearn_ops.workflow.dvc_pipeline import render_dvc_yaml
from unlearn_ops.workflow.preparation import prepare_data
from unlearn_ops.workflow.revisions import (
    DataRevision,
    mark_applied,
    record_revision,
    request_tag,
)
from unlearn_ops.workflow.workspace import Workspace


def test_a_revision_is_recorded_with_a_tag_per_request(trained: Workspace) -> None:
    lineage = trained.lineage()
    first = lineage.head()
    batch = [
        request("r1", shard_records(trained, 1, 1)),
        request("r2", shard_records(trained, 1, 2)),
    ]
    apply_batch(trained, batch)
    revision = record_revision(trained, "forget r1, r2", batch)
    assert revision.git_sha == lineage.head() != first
    assert revision.tags == ("unlearn/forget/r1", "unlearn/forget/r2")
    assert sorted(revision.shard_md5s) == trained.ensemble.shard_ids
    shard = lineage.read_at_revision("data/shards/shard-001.parquet", request_tag("r1"))
    assert shard == trained.ensemble.shard_path(1).read_bytes()
    assert lineage.is_clean()


def test_applied_requests_name_their_revision_in_the_ledger(trained: Workspace) -> None:
    batch = [request("r1", shard_records(trained, 0, 1))]
    receive_requests(trained, batch)
    revision = DataRevision("a" * 40, "md5.dir", {0: "m0"}, ("unlearn/forget/r1",))
    mark_applied(trained, batch, revision)
    entry = list(trained.ledger.entries())[-1]
    assert (entry.event, entry.request_id) == ("applied", "r1")
    assert entry.data["git_sha"] == "a" * 40
    assert entry.data["shard_md5s"] == {"0": "m0"}
    assert trained.ledger.request("r1").state == "applied"  # type: ignore[union-attr]


def test_a_revision_versions_the_pipeline_of_the_shards_that_exist(tmp_path: Path) -> None:
    """S edited in params.yaml after `init` rendered dvc.yaml: the revision re-renders it.

    Before, `dvc commit` looked for the shard files of the old S and failed with a trace.
    """
    root = new_root(tmp_path / "ws")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sisa"]["shards"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    ws = open_with_fakes(root)
    ws.lineage().init_repository()
    prepare_data(ws)
    record_revision(ws, "prepare")
    assert (root / "dvc.yaml").read_text() == render_dvc_yaml(ws.params)
    assert "shard-001" in (root / "dvc.yaml").read_text()
    assert "shard-002" not in (root / "dvc.yaml").read_text()

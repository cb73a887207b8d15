"""The DataLineage contract, run over git + DVC (real, in tmp_path) and the in-memory fake.

Every test runs once per implementation, on a workspace whose pipeline outputs are small
stand-in files (all that git and DVC need to record and read revisions back).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from unlearn_ops.adapters.dvc.lineage import DvcLineage
from unlearn_ops.errors import LineageError
from unlearn_ops.params import Params
from unlearn_ops.testing import InjectedCrashError, InMemoryLineage, fail_at
from unlearn_ops.workflow.ports import DataLineage
from unlearn_ops.workflow.workspace import write_workspace_files

PARAMS = Params.from_mapping({"sisa": {"shards": 2, "slices": 1}})
SHARD_0 = "data/shards/shard-000.parquet"
SHARD_1 = "data/shards/shard-001.parquet"


def write_outputs(root: Path, marker: str) -> None:
    """Stand-ins for every output of the pipeline; shard 1 and model 1 hold `marker`."""
    (root / "data" / "shards").mkdir(parents=True, exist_ok=True)
    (root / SHARD_0).write_bytes(b"shard 0")
    (root / SHARD_1).write_bytes(f"shard 1 {marker}".encode())
    (root / "data" / "holdout.parquet").write_bytes(b"holdout")
    (root / "ensemble.json").write_text("{}\n")
    (root / "models").mkdir(exist_ok=True)
    for shard_id in (0, 1):
        weights = marker if shard_id == 1 else "fixed"
        (root / "models" / f"shard-{shard_id:03d}.pt").write_bytes(f"w {weights}".encode())
        (root / "models" / f"shard-{shard_id:03d}.json").write_text(f'{{"w": "{weights}"}}\n')
    (root / "metrics.json").write_text('{"accuracy": 0.9}\n')
    (root / "registry.json").write_text('{"version": "1"}\n')


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture(params=["dvc", "memory"])
def lineage(request: pytest.FixtureRequest, tmp_path: Path) -> DataLineage:
    root = tmp_path / "ws"
    write_workspace_files(root, PARAMS)
    if request.param == "dvc":
        return DvcLineage(root)
    return InMemoryLineage(root)


def root_of(lineage: DataLineage) -> Path:
    root = getattr(lineage, "root", None)
    assert isinstance(root, Path)
    return root


class TestDataLineageContract:
    def test_init_records_the_first_revision_and_new_outputs_make_it_dirty(
        self, lineage: DataLineage
    ) -> None:
        first = lineage.init_repository()
        assert len(first) == 40
        assert lineage.head() == first
        assert lineage.parent_commit(first) is None
        assert "shards: 2" in lineage.read_git_file(first, "params.yaml")
        assert lineage.init_repository() == first  # kept, not made again
        write_outputs(root_of(lineage), "a")
        assert not lineage.is_clean()

    def test_a_revision_records_the_files_and_its_parent(self, lineage: DataLineage) -> None:
        first = lineage.init_repository()
        root = root_of(lineage)
        write_outputs(root, "a")
        revision = lineage.record_revision("train", shard_ids=[0, 1])
        assert revision.git_sha == lineage.head() != first
        assert lineage.parent_commit(revision.git_sha) == first
        assert revision.shard_md5s == {0: md5(b"shard 0"), 1: md5(b"shard 1 a")}
        assert revision.shards_md5
        assert revision.tags == ()
        assert lineage.is_clean()
        assert lineage.read_at_revision(SHARD_1, revision.git_sha) == b"shard 1 a"
        assert lineage.read_at_revision("models/shard-001.pt", revision.git_sha) == b"w a"
        assert lineage.read_git_file(revision.git_sha, "models/shard-001.json") == '{"w": "a"}\n'
        assert lineage.read_git_file(revision.git_sha, "metrics.json") == '{"accuracy": 0.9}\n'

    def test_old_revisions_stay_readable_after_the_data_changes(self, lineage: DataLineage) -> None:
        lineage.init_repository()
        root = root_of(lineage)
        write_outputs(root, "a")
        before = lineage.record_revision("train", shard_ids=[0, 1])
        write_outputs(root, "b")
        assert not lineage.is_clean()
        after = lineage.record_revision("forget", tags=["unlearn/forget/r1"], shard_ids=[0, 1])
        assert after.git_sha != before.git_sha
        assert after.shard_md5s == {0: before.shard_md5s[0], 1: md5(b"shard 1 b")}
        assert after.shards_md5 != before.shards_md5
        assert after.tags == ("unlearn/forget/r1",)
        assert lineage.read_at_revision(SHARD_1, before.git_sha) == b"shard 1 a"
        assert lineage.read_at_revision(SHARD_1, after.git_sha) == b"shard 1 b"
        assert lineage.read_git_file(before.git_sha, "models/shard-001.json") == '{"w": "a"}\n'
        # A request's tag names the revision that forgot its records.
        assert lineage.read_at_revision(SHARD_1, "unlearn/forget/r1") == b"shard 1 b"
        assert lineage.parent_commit("unlearn/forget/r1") == before.git_sha

    def test_recording_nothing_new_keeps_the_head_and_moves_tags_to_it(
        self, lineage: DataLineage
    ) -> None:
        lineage.init_repository()
        write_outputs(root_of(lineage), "a")
        first = lineage.record_revision("train", tags=["unlearn/forget/r1"], shard_ids=[0, 1])
        again = lineage.record_revision("again", shard_ids=[0, 1])
        assert again.git_sha == first.git_sha
        assert again.shards_md5 == first.shards_md5
        write_outputs(root_of(lineage), "b")
        moved = lineage.record_revision("rerun", tags=["unlearn/forget/r1"])
        assert moved.shard_md5s == {}
        assert lineage.read_at_revision(SHARD_1, "unlearn/forget/r1") == b"shard 1 b"

    def test_recording_small_files_alone_commits_them_and_tags_the_revision(
        self, lineage: DataLineage
    ) -> None:
        first = lineage.init_repository()
        root = root_of(lineage)
        (root / "federation").mkdir()
        (root / "federation" / "federation.json").write_text('{"removed": []}\n')
        paths = ["federation/federation.json", "federation/absent.json"]
        second = lineage.record_files("a federation", paths, tags=["unlearn/forget/w1"])
        assert second != first
        assert lineage.parent_commit(second) == first
        assert lineage.read_git_file(second, "federation/federation.json") == '{"removed": []}\n'
        assert lineage.read_git_file("unlearn/forget/w1", "federation/federation.json")
        assert lineage.record_files("nothing new", paths) == second
        (root / "federation" / "federation.json").write_text('{"removed": ["h"]}\n')
        third = lineage.record_files("a removal", paths)
        assert lineage.read_git_file(third, "federation/federation.json") == '{"removed": ["h"]}\n'
        assert lineage.read_git_file(second, "federation/federation.json") == '{"removed": []}\n'

    def test_recording_files_before_any_history_is_a_lineage_error(
        self, lineage: DataLineage
    ) -> None:
        (root_of(lineage) / "ledger.jsonl").write_text("")
        with pytest.raises(LineageError):
            lineage.record_files("too early", ["ledger.jsonl"])

    def test_the_current_revision_reads_the_files_as_they_are(self, lineage: DataLineage) -> None:
        lineage.init_repository()
        write_outputs(root_of(lineage), "a")
        recorded = lineage.record_revision("train", shard_ids=[0, 1])
        write_outputs(root_of(lineage), "b")
        current = lineage.current_revision([1])
        assert current.git_sha == recorded.git_sha
        assert current.shard_md5s == {1: md5(b"shard 1 b")}
        assert current.shards_md5 != recorded.shards_md5

    def test_what_is_not_there_is_a_lineage_error(self, lineage: DataLineage) -> None:
        first = lineage.init_repository()
        write_outputs(root_of(lineage), "a")
        second = lineage.record_revision("train", shard_ids=[0, 1]).git_sha
        unknown = "0" * 40
        with pytest.raises(LineageError):
            lineage.parent_commit(unknown)
        with pytest.raises(LineageError):
            lineage.read_git_file(unknown, "params.yaml")
        with pytest.raises(LineageError):
            lineage.read_at_revision(SHARD_1, unknown)
        with pytest.raises(LineageError):
            lineage.read_at_revision(SHARD_1, first)  # written after that revision
        with pytest.raises(LineageError):
            lineage.read_git_file(second, "no-such-file.yaml")
        with pytest.raises(LineageError):
            lineage.read_git_file(second, SHARD_1)  # data is DVC's, not git's

    def test_a_failure_injected_at_record_revision_records_nothing(
        self, lineage: DataLineage
    ) -> None:
        first = lineage.init_repository()
        write_outputs(root_of(lineage), "a")
        failing = fail_at(lineage, "record_revision")
        with pytest.raises(InjectedCrashError):
            failing.record_revision("train", shard_ids=[0, 1])
        assert failing.head() == first
        assert not failing.is_clean()

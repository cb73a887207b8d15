"""git + DVC lineage against real `git init` and `dvc init` in tmp_path.

The workspaces here are not trained: small stand-in files fill every output of dvc.yaml,
which is all that DVC and git need to record, diff and read revisions.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from unlearn_ops.adapters.dvc.lineage import (
    changed_paths,
    git_head,
    init_repository,
    is_clean,
    read_at_revision,
    read_git_file,
    record_revision,
    stage_status,
)
from unlearn_ops.errors import LineageError
from unlearn_ops.params import Params
from unlearn_ops.workflow.workspace import write_workspace_files

PARAMS = Params.from_mapping({"sisa": {"shards": 2, "slices": 1}})


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def new_workspace(root: Path) -> Path:
    write_workspace_files(root, PARAMS)
    init_repository(root)
    return root


def shard_path(root: Path, shard_id: int) -> Path:
    return root / "data" / "shards" / f"shard-{shard_id:03d}.parquet"


def write_shard(root: Path, shard_id: int, record_ids: list[int]) -> bytes:
    path = shard_path(root, shard_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"record_id": record_ids, "label": [0] * len(record_ids)}).to_parquet(path)
    return path.read_bytes()


def write_outputs(root: Path, shards: dict[int, list[int]]) -> None:
    """Stand-ins for every output of the pipeline, as a flow leaves them."""
    for shard_id, record_ids in shards.items():
        write_shard(root, shard_id, record_ids)
    pd.DataFrame({"record_id": [99], "label": [0]}).to_parquet(root / "data" / "holdout.parquet")
    (root / "ensemble.json").write_text("{}\n")
    (root / "models").mkdir(exist_ok=True)
    for shard_id in shards:
        (root / "models" / f"shard-{shard_id:03d}.pt").write_bytes(b"weights %d" % shard_id)
        (root / "models" / f"shard-{shard_id:03d}.json").write_text("{}\n")
    (root / "metrics.json").write_text('{"accuracy": 0.9}\n')
    (root / "registry.json").write_text('{"version": "1"}\n')


@dataclass(frozen=True)
class History:
    """A workspace with two recorded revisions: shard 1 lost record 4 in the second."""

    root: Path
    first: str
    second: str
    shard_1_before: bytes
    shard_1_after: bytes


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = new_workspace(tmp_path_factory.mktemp("lineage") / "ws")
    write_outputs(root, {0: [1, 2], 1: [3, 4]})
    before = shard_path(root, 1).read_bytes()
    first = record_revision(root, "train", shard_ids=[0, 1])
    after = write_shard(root, 1, [3])
    second = record_revision(root, "forget req-a", tags=["unlearn/forget/req-a"], shard_ids=[0, 1])
    return History(root, first.git_sha, second.git_sha, before, after)


# ------------------------------------------------------------------------------ init
def test_init_makes_a_git_repository_with_dvc_and_one_commit(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write_workspace_files(root, PARAMS)
    sha = init_repository(root)
    assert sha == git(root, "rev-parse", "HEAD") == git_head(root)
    assert git(root, "rev-list", "--count", "HEAD") == "1"
    assert Path(git(root, "rev-parse", "--show-toplevel")).resolve() == root.resolve()
    assert git(root, "symbolic-ref", "--short", "HEAD") == "main"
    assert (root / ".dvc").is_dir()
    tracked = git(root, "ls-files").splitlines()
    assert {".dvc/config", "params.yaml", "dvc.yaml", "forgotten.json", ".gitignore"} <= set(
        tracked
    )
    assert git(root, "status", "--porcelain") == ""


def repository_with_one_commit(root: Path, branch: str, name: str, text: str) -> None:
    """A new git repository at `root` (made here) whose one commit adds file `name`."""
    root.mkdir()
    git(root, "init", "-q", "-b", branch)
    (root / name).write_text(text)
    git(root, "add", name)
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", name)


def repository_state(root: Path) -> dict[str, object]:
    """What a git command could change in a repository: status, HEAD, index, config, refs."""
    return {
        "status": git(root, "status", "--porcelain"),
        "head": git(root, "rev-parse", "HEAD"),
        "index": (root / ".git" / "index").read_bytes(),
        "config": (root / ".git" / "config").read_bytes(),
        "refs": git(root, "for-each-ref"),
    }


def test_init_inside_another_repository_never_touches_it(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    repository_with_one_commit(outer, "trunk", "README", "the enclosing project\n")
    root = outer / "ws"
    write_workspace_files(root, PARAMS)
    before = repository_state(outer)
    sha = init_repository(root)
    after = repository_state(outer)
    assert after == before
    assert not (outer / ".dvc").exists()
    assert (root / ".git").is_dir()
    assert Path(git(root, "rev-parse", "--show-toplevel")).resolve() == root.resolve()
    assert git(root, "rev-list", "--count", "HEAD") == "1"
    assert sha == git(root, "rev-parse", "HEAD")


def test_init_keeps_a_repository_whose_top_level_is_the_workspace(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    repository_with_one_commit(root, "main", "notes.txt", "mine\n")
    first = git(root, "rev-parse", "HEAD")
    write_workspace_files(root, PARAMS)
    sha = init_repository(root)
    assert git(root, "rev-list", "--count", "HEAD") == "2"
    assert git(root, "rev-parse", "HEAD~1") == first
    assert sha == git(root, "rev-parse", "HEAD")
    assert (root / ".dvc" / "config").is_file()


# -------------------------------------------------------------------------- revisions
def test_record_revision_commits_the_state_and_tags_it(history: History) -> None:
    root = history.root
    assert history.second == git(root, "rev-parse", "HEAD")
    assert git(root, "rev-parse", "HEAD~1") == history.first
    assert git(root, "log", "-1", "--format=%s") == "forget req-a"
    assert git(root, "rev-parse", "unlearn/forget/req-a^{commit}") == history.second
    tracked = set(git(root, "ls-files").splitlines())
    assert {"dvc.lock", "metrics.json", "registry.json", "models/shard-001.json"} <= tracked
    # Data and weights are DVC's: in the cache, not in git.
    assert "data/shards/shard-001.parquet" not in tracked
    assert "models/shard-001.pt" not in tracked
    assert is_clean(root)
    assert stage_status(root) == {}


def test_a_revision_reports_the_md5s_that_dvc_lock_records(tmp_path: Path) -> None:
    root = new_workspace(tmp_path / "ws")
    write_outputs(root, {0: [1, 2], 1: [3]})
    revision = record_revision(root, "train", shard_ids=[0, 1])
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = {o["path"]: o["md5"] for o in lock["stages"]["prepare"]["outs"]}
    assert revision.shards_md5 == outs["data/shards"]
    assert revision.shards_md5.endswith(".dir")
    assert revision.shard_md5s == {
        s: hashlib.md5(shard_path(root, s).read_bytes(), usedforsecurity=False).hexdigest()
        for s in (0, 1)
    }
    assert revision.tags == ()
    assert revision.to_dict()["shard_md5s"] == {str(k): v for k, v in revision.shard_md5s.items()}


def test_a_revision_is_pushed_to_the_default_remote(tmp_path: Path) -> None:
    root = new_workspace(tmp_path / "ws")
    store = tmp_path / "remote"
    dvc = [str(Path(sys.executable).parent / "dvc")]
    subprocess.run([*dvc, "remote", "add", "-d", "store", str(store)], cwd=root, check=True)
    write_outputs(root, {0: [1, 2], 1: [3]})
    revision = record_revision(root, "train", shard_ids=[0, 1])
    pushed = {p.name for p in store.rglob("*") if p.is_file()}
    # Every shard file's content (by md5, as DVC addresses it) is on the remote.
    assert {md5[2:] for md5 in revision.shard_md5s.values()} <= pushed


def test_a_remote_that_refuses_the_push_is_a_lineage_error(tmp_path: Path) -> None:
    root = new_workspace(tmp_path / "ws")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the remote's folder should be")
    dvc = [str(Path(sys.executable).parent / "dvc")]
    subprocess.run([*dvc, "remote", "add", "-d", "store", str(blocker / "x")], cwd=root, check=True)
    write_outputs(root, {0: [1], 1: [2]})
    with pytest.raises(LineageError, match="dvc push failed"):
        record_revision(root, "train", shard_ids=[0, 1])


def test_a_rerun_with_nothing_new_commits_nothing_and_moves_the_tag(tmp_path: Path) -> None:
    root = new_workspace(tmp_path / "ws")
    write_outputs(root, {0: [1], 1: [2]})
    first = record_revision(root, "forget req-a", tags=["unlearn/forget/req-a"])
    (root / "metrics.json").write_text('{"accuracy": 0.8}\n')
    second = record_revision(root, "evaluate")
    assert second.git_sha != first.git_sha
    again = record_revision(root, "forget req-a again", tags=["unlearn/forget/req-a"])
    assert again.git_sha == second.git_sha
    assert git(root, "rev-list", "--count", "HEAD") == "3"
    assert git(root, "rev-parse", "unlearn/forget/req-a^{commit}") == second.git_sha


def test_a_revision_of_the_register_stage_alone_leaves_the_pipeline_up_to_date(
    tmp_path: Path,
) -> None:
    root = new_workspace(tmp_path / "ws")
    write_outputs(root, {0: [1, 2], 1: [3]})
    record_revision(root, "train", shard_ids=[0, 1])
    lock_before = yaml.safe_load((root / "dvc.lock").read_text())
    (root / "registry.json").write_text('{"version": "2"}\n')
    assert stage_status(root) != {}  # the register stage's output changed

    revision = record_revision(root, "version 2 is champion", stages=["register"])

    assert revision.git_sha == git(root, "rev-parse", "HEAD")
    assert is_clean(root)
    assert stage_status(root) == {}
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    before = lock_before["stages"]
    changed = {name for name, entry in lock["stages"].items() if entry != before.get(name)}
    assert changed == {"register"}


def test_changed_paths_names_the_shard_files_that_changed(history: History) -> None:
    assert changed_paths(history.root, history.first, history.second) == {
        "added": [],
        "deleted": [],
        "modified": ["data/shards/", "data/shards/shard-001.parquet"],
    }
    assert changed_paths(history.root, history.second, history.second) == {
        "added": [],
        "deleted": [],
        "modified": [],
    }
    # Against the working tree (no second revision), which matches the newest one.
    assert changed_paths(history.root, history.first) == changed_paths(
        history.root, history.first, history.second
    )


def test_read_at_revision_returns_the_old_bytes(history: History) -> None:
    root = history.root
    old = read_at_revision(root, "data/shards/shard-001.parquet", history.first)
    assert old == history.shard_1_before
    assert old != shard_path(root, 1).read_bytes()
    assert list(pd.read_parquet(io.BytesIO(old))["record_id"]) == [3, 4]
    new = read_at_revision(root, "data/shards/shard-001.parquet", history.second)
    assert new == history.shard_1_after
    assert (
        read_at_revision(root, "params.yaml", history.first) == (root / "params.yaml").read_bytes()
    )
    assert read_git_file(root, history.first, "registry.json") == '{"version": "1"}\n'


# ----------------------------------------------------------------------------- errors
def test_a_bad_revision_is_a_lineage_error(history: History) -> None:
    with pytest.raises(LineageError, match="no-such-rev"):
        read_at_revision(history.root, "data/shards/shard-001.parquet", "no-such-rev")
    with pytest.raises(LineageError, match="dvc diff failed"):
        changed_paths(history.root, "no-such-rev", history.second)
    with pytest.raises(LineageError, match="git show failed"):
        read_git_file(history.root, "no-such-rev", "params.yaml")


def test_a_path_absent_at_a_revision_is_a_lineage_error(history: History) -> None:
    with pytest.raises(LineageError, match=r"reading data/shards/shard-009\.parquet"):
        read_at_revision(history.root, "data/shards/shard-009.parquet", history.first)


def test_a_folder_that_is_no_repository_is_a_lineage_error(tmp_path: Path) -> None:
    with pytest.raises(LineageError, match="git rev-parse failed"):
        git_head(tmp_path)
    with pytest.raises(LineageError, match="dvc open failed"):
        stage_status(tmp_path)
    with pytest.raises(LineageError, match="dvc open failed"):
        record_revision(tmp_path, "nothing to record")

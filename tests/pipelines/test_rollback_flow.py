"""Deletion-safe rollback end to end: real MLflow (sqlite), git + DVC and Prefect.

One history is built for the module: version 1 trained from scratch, then params.yaml
edited (weight decay) and request req-1 forgotten, so version 2 (champion) differs from
version 1 in its params and in shard 1's data. Tests that change the workspace work on a
copy of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from pipelines.forget import forget_records
from pipelines.rollback import rollback_model
from pipelines.train import train_ensemble
from tests.pipelines.conftest import make_workspace, set_params
from unlearn_ops.adapters.dvc.lineage import is_clean, read_at_revision, read_git_file
from unlearn_ops.errors import UnsafeVersionError
from unlearn_ops.serving.promotion import promote
from unlearn_ops.workflow.certification import certify_version
from unlearn_ops.workflow.rollback import unsafe_versions
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from tests.conftest import CliRunner

pytestmark = pytest.mark.slow


def training_ids_at(root: Path, rev: str, shards: int = 3) -> set[str]:
    ids: set[str] = set()
    for shard_id in range(shards):
        data = read_at_revision(root, f"data/shards/shard-{shard_id:03d}.parquet", rev)
        ids.update(str(r) for r in pd.read_parquet(io.BytesIO(data))["record_id"])
    return ids


def current_ids(root: Path, shards: int = 3) -> set[str]:
    return {
        str(r)
        for s in range(shards)
        for r in pd.read_parquet(root / "data" / "shards" / f"shard-{s:03d}.parquet")["record_id"]
    }


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def snapshot(root: Path) -> dict[str, Any]:
    """Aliases, git HEAD and the bytes of every file a rollback could touch."""
    files = [root / n for n in ("params.yaml", "dvc.yaml", "dvc.lock", "forgotten.json")]
    files += [root / n for n in ("registry.json", "metrics.json", "ledger.jsonl")]
    files += sorted((root / "models").glob("shard-*")) + sorted((root / "data").rglob("*.parquet"))
    return {
        "aliases": Workspace.open(root).registry().aliases(),
        "head": git(root, "rev-parse", "HEAD"),
        "files": {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
        },
    }


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """v1 (weight decay 0), then weight decay 1e-6 and req-1 forgotten: v2, champion."""
    root = make_workspace(tmp_path_factory.mktemp("rollback") / "ws")
    train_ensemble(str(root))
    forgotten = [
        str(r) for r in pd.read_parquet(root / "data/shards/shard-001.parquet")["record_id"][:2]
    ]
    set_params(root, "training", weight_decay=1e-6)
    result = forget_records(
        str(root), [{"request_id": "req-1", "record_ids": forgotten, "reason": "test"}]
    )
    # A model trained under other params is stale: every shard trained again for version 2.
    assert [r["shard_id"] for r in result["retrained"]] == [0, 1, 2]
    return root, forgotten


def test_forget_marks_the_versions_that_miss_a_deletion(history: tuple[Path, list[str]]) -> None:
    root, _ = history
    ws = Workspace.open(root)
    registry = ws.registry()
    old, new = registry.get_version("1"), registry.get_version("2")
    assert old.tag("honours_all_deletions") == "false"
    assert old.tag("superseded_by_request") == "req-1"
    assert new.tag("honours_all_deletions", "unset") == "unset"
    assert unsafe_versions(ws) == {"1": ["req-1"]}
    assert registry.aliases() == {"champion": "2", "previous": "1"}


def test_promote_refuses_a_version_that_misses_a_deletion(
    history: tuple[Path, list[str]],
) -> None:
    root, _ = history
    ws = Workspace.open(root)
    registry = ws.registry()
    with pytest.raises(UnsafeVersionError, match=r"version 1 does not honour 1 .*\(req-1\)"):
        promote(ws, registry.get_version("1"), [])
    assert registry.aliases() == {"champion": "2", "previous": "1"}


def test_rollback_to_an_unsafe_version_is_refused_and_changes_nothing(
    history: tuple[Path, list[str]],
) -> None:
    root, _ = history
    before = snapshot(root)
    # Named, and by default (`previous` is version 1): the same refusal.
    for to in ("1", None):
        with pytest.raises(UnsafeVersionError, match="req-1") as caught:
            rollback_model(str(root), to=to)
        assert "champion stays at version 2" in str(caught.value)
        assert "rollback --to 1 --replay" in str(caught.value)
    assert snapshot(root) == before
    assert is_clean(root)


def test_cli_refusals_and_no_op(history: tuple[Path, list[str]], cli: CliRunner) -> None:
    root, _ = history
    before = snapshot(root)
    code, out, err = cli(["rollback", "--to", "99", "-w", str(root)])
    assert code == 2
    assert err.strip().startswith("error: model 'flow-test' has no version '99'")
    assert len(err.strip().splitlines()) == 1

    code, out, err = cli(["rollback", "-w", str(root)])
    assert code == 2
    assert "req-1" in err
    assert "--replay" in err
    assert len(err.strip().splitlines()) == 1

    code, out, _ = cli(["rollback", "--to", "champion", "-w", str(root)])
    assert code == 0
    assert out.strip() == "version 2 is champion already and honours every deletion; nothing to do"

    code, out, _ = cli(["rollback", "--to", "2", "--replay", "--json", "-w", str(root)])
    assert code == 0
    assert json.loads(out)["noop"] is True
    assert snapshot(root) == before


def test_replay_then_rollback_to_a_safe_version(
    history: tuple[Path, list[str]], tmp_path: Path, cli: CliRunner
) -> None:
    source, forgotten = history
    root = tmp_path / "ws"
    shutil.copytree(source, root, symlinks=True)
    ws = Workspace.open(root)
    registry = ws.registry()
    v1, v2 = registry.get_version("1"), registry.get_version("2")
    forgotten_before = json.loads((root / "forgotten.json").read_text())["hashes"]

    # --replay: version 1's params over the current data, only shard 1 retrains.
    code, out, err = cli(["rollback", "--to", "1", "--replay", "--json", "-w", str(root)])
    assert code == 0, err
    result = json.loads(out)
    assert (result["action"], result["version"], result["missing"]) == ("replay", "3", ["req-1"])
    assert [r["shard_id"] for r in result["retrained"]] == [1]
    assert registry.aliases() == {"champion": "3", "previous": "2"}
    replayed = registry.get_version("3")
    assert replayed.tag("kind") == "replay"
    assert replayed.tag("parent_version") == "1"
    assert replayed.request_ids == ["req-1"]
    assert replayed.honoured_requests == ["req-1"]
    assert replayed.tag("params_hash") == v1.tag("params_hash") != v2.tag("params_hash")
    assert replayed.description.startswith("Replays deletions for request req-1: 2 records")
    assert re.search(r"Derived from \[?version 1\b", replayed.description)
    assert (root / "params.yaml").read_text() == read_git_file(
        root, v1.tag("git_sha"), "params.yaml"
    )
    # Shards 0 and 2 are version 1's models again, resumed from the cache for free.
    weights = json.loads(replayed.tag("weights"))
    old_weights = json.loads(v1.tag("weights"))
    assert weights["0"] == old_weights["0"]
    assert weights["2"] == old_weights["2"]
    assert weights["1"] != old_weights["1"]
    assert not set(forgotten) & training_ids_at(root, replayed.tag("git_sha"))
    assert certify_version(Workspace.open(root), "champion").passed
    assert is_clean(root)

    # Plain rollback to `previous` (version 2 honours req-1): restored, not rebuilt.
    head = git(root, "rev-parse", "HEAD")
    code, out, err = cli(["rollback", "-w", str(root)])
    assert code == 0, err
    assert out.startswith("version 2 is champion again (version 3 is previous; data at git ")
    assert registry.aliases() == {"champion": "2", "previous": "3"}
    assert len(registry.versions()) == 3
    ws = Workspace.open(root)
    assert (root / "params.yaml").read_text() == read_git_file(
        root, v2.tag("git_sha"), "params.yaml"
    )
    served = {str(s): (ws.ensemble.served_model_info(s) or {})["weights_hash"] for s in range(3)}
    assert served == json.loads(v2.tag("weights"))
    assert ws.ensemble.stale_shards() == []
    assert (ws.read_json(ws.registry_path) or {})["version"] == "2"
    assert git(root, "rev-parse", "HEAD") != head
    assert "roll back to version 2" in git(root, "log", "-1", "--format=%s")
    assert is_clean(root)

    # Rollback never brings data back.
    assert not set(forgotten) & current_ids(root)
    assert set(json.loads((root / "forgotten.json").read_text())["hashes"]) >= set(forgotten_before)
    assert unsafe_versions(ws) == {"1": ["req-1"]}

"""Compliance properties over random histories of train, forget, rollback and purge.

Hypothesis draws histories over a tiny real workspace (git + DVC, MLflow on sqlite, the
session's Prefect server): each example trains a fresh workspace, forgets a request, then
takes each other kind of step once in a drawn order: a forget of new records (sometimes
with one forgotten before), a request for records forgotten already (a no-op), a retrain
under other params, a plain rollback and a `--replay` rollback to drawn versions, and a
purge with a clock past the retention window; records and targets are drawn too. After
every step it checks, against the registry, the ledger and the data:

- the champion's training data (its shard files at its git revision, through DVC) holds
  no forgotten record, by id and by keyed hash; neither does the workspace's data;
- the champion honours every recorded deletion, every recorded deletion is one the test
  asked for, and a version that misses one is never champion (and is tagged so);
- the audit of every request names a first honouring version that is registered and whose
  honoured list names the request, or one the ledger says a purge deleted; the version
  the ledger says served it is registered unless the ledger says the request was purged;
  the champion honours it;
- a refused rollback changes nothing; a replay is champion and certifies exactly;
- after a purge past the window no version misses a deletion, every request is purged,
  and the scan finds no file holding a forgotten record;
- and, at the end of the history, that no flow left git or DVC with uncommitted changes.

A fixed history (a no-op request after a purge) is checked the same way.

Every example trains its own workspace: the MLflow store keeps the experiment's absolute
artifact location, so a copied workspace would log to, and purge from, the original's
artifact folder.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from pipelines.forget import forget_records
from pipelines.purge import purge_superseded
from pipelines.rollback import rollback_model
from pipelines.train import train_ensemble
from tests.pipelines.conftest import make_workspace, set_params
from unlearn_ops.adapters.dvc.lineage import git_head, is_clean, read_at_revision
from unlearn_ops.compliance.audit import audit_request
from unlearn_ops.compliance.scan import scan_workspace
from unlearn_ops.errors import RollbackError, UnsafeVersionError
from unlearn_ops.serving.promotion import missing_deletions
from unlearn_ops.workflow.certification import certify_version
from unlearn_ops.workflow.rollback import deletions_recorded
from unlearn_ops.workflow.workspace import Workspace

pytestmark = pytest.mark.slow
T = TypeVar("T")

SHARDS = 3
# Tiny and fast; the gates always pass, so every forget is served and every replay promoted.
PARAMS: dict[str, dict[str, object]] = {
    "sisa": {"shards": SHARDS, "slices": 2},
    "model": {"name": "mlp", "hidden_sizes": [8]},
    "training": {"epochs_per_stage": 1, "learning_rate": 0.01},
    "gates": {"min_accuracy": 0.0, "max_accuracy_drop": 1.0, "fairness": {"enabled": False}},
    "registry": {"model_name": "compliance-test"},
}

# What ran, for the report at the end of the test (pytest -s shows it).
STATS: dict[str, int] = {"sequences": 0, "steps": 0}
STEPS: dict[str, int] = {}
SECONDS: dict[str, float] = {"steps": 0.0, "checks": 0.0}


def shard_ids_at(root: Path, rev: str) -> set[str]:
    """Record ids of every shard file as of a git revision (read through DVC)."""
    ids: set[str] = set()
    for shard_id in range(SHARDS):
        data = read_at_revision(root, f"data/shards/shard-{shard_id:03d}.parquet", rev)
        ids.update(str(r) for r in pd.read_parquet(io.BytesIO(data))["record_id"])
    return ids


def current_ids(root: Path) -> list[str]:
    """Record ids of the workspace's shard files, sorted (what a request can pick from)."""
    ids: set[str] = set()
    for shard_id in range(SHARDS):
        table = pd.read_parquet(root / "data" / "shards" / f"shard-{shard_id:03d}.parquet")
        ids.update(str(r) for r in table["record_id"])
    return sorted(ids)


def git_status(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def snapshot(root: Path) -> dict[str, Any]:
    """Aliases, versions and their tags, git HEAD and every file a flow could rewrite."""
    names = ("params.yaml", "dvc.lock", "forgotten.json", "registry.json", "metrics.json")
    files = [root / n for n in (*names, "ledger.jsonl")]
    files += sorted((root / "models").glob("shard-*")) + sorted((root / "data").rglob("*.parquet"))
    registry = Workspace.open(root).registry()
    return {
        "aliases": registry.aliases(),
        "versions": {v.version: dict(v.tags) for v in registry.versions()},
        "head": git_head(root),
        "files": {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files
            if p.exists()
        },
    }


class History:
    """One workspace's history: the steps the test takes, and the invariants after each."""

    def __init__(self, root: Path, data: st.DataObject | None = None) -> None:
        self.root = root
        self.data = data
        self.forgotten: set[str] = set()  # every record id forgotten so far
        self.requests: list[str] = []  # every request sent, oldest first
        self.weight_decay = 0.0
        self.dirty: list[str] = []  # steps after which git or DVC had uncommitted changes

    def run(self, step: str, *args: Any) -> None:
        """One step, then every invariant; counted and timed for the report."""
        if self.data is not None:
            note(f"step {step}")
        started = time.perf_counter()
        getattr(self, step)(*args)
        checked = time.perf_counter()
        self.champion_never_saw_a_forgotten_record()
        self.champion_honours_every_deletion()
        self.audits_agree_with_registry_and_ledger()
        # Every flow ends with a git commit (README): asserted at the end of the sequence,
        # so that a dirty tree does not hide what the other invariants would find.
        if not is_clean(self.root):
            where = f"after {step} {self.requests[-1:] if 'forget' in step else ''}"
            self.dirty.append(f"{where}: {git_status(self.root)!r}")
        STATS["steps"] += 1
        STEPS[step] = STEPS.get(step, 0) + 1
        SECONDS["steps"] += checked - started
        SECONDS["checks"] += time.perf_counter() - checked

    # ---------------------------------------------------------------------- steps
    def train(self) -> None:
        result = train_ensemble(str(self.root))
        assert result["version"] == "1"

    def _forget(self, record_ids: list[str]) -> None:
        request_id = f"req-{len(self.requests) + 1}"
        registry = Workspace.open(self.root).registry()
        before = {v.version for v in registry.versions()}
        result = forget_records(
            str(self.root), [{"request_id": request_id, "record_ids": record_ids}]
        )
        self.requests.append(request_id)
        new_records = set(record_ids) - self.forgotten
        self.forgotten |= set(record_ids)
        if new_records:
            assert not result.get("noop"), result
            assert result["version"] not in before
            assert registry.alias_version("champion") == result["version"]
            assert request_id in registry.get_version(result["version"]).honoured_requests
        else:
            assert result["noop"] is True, result
            assert {v.version for v in registry.versions()} == before

    def draw(self, strategy: st.SearchStrategy[T], label: str) -> T:
        assert self.data is not None, "a drawn step needs hypothesis's data"
        return self.data.draw(strategy, label=label)

    def draw_indices(self, length: int, most: int, label: str) -> list[int]:
        """One to `most` distinct indices into a list of `length` items."""
        return self.draw(
            st.lists(st.integers(0, length - 1), min_size=1, max_size=most, unique=True), label
        )

    def forget_ids(self, record_ids: list[str]) -> None:
        """A request for given records (a fixed history)."""
        self._forget(record_ids)

    def forget(self) -> None:
        """New records, sometimes with one forgotten before (a partly served request)."""
        pool = current_ids(self.root)
        record_ids = [pool[i] for i in self.draw_indices(len(pool), 3, "indices")]
        old = sorted(self.forgotten)
        with_old = bool(old) and self.draw(st.booleans(), "with a forgotten record")
        if with_old:
            record_ids.append(old[self.draw(st.integers(0, len(old) - 1), "old")])
        self._forget(record_ids)

    def forget_again(self) -> None:
        """Only records forgotten before: served already, by the versions that honour them."""
        old = sorted(self.forgotten)
        self._forget([old[i] for i in self.draw_indices(len(old), 2, "old indices")])

    def retrain(self) -> None:
        """params.yaml edited (weight decay), then the train flow: every shard anew."""
        self.weight_decay = 1e-6 if self.weight_decay == 0.0 else 0.0
        set_params(self.root, "training", weight_decay=self.weight_decay)
        result = train_ensemble(str(self.root))
        registry = Workspace.open(self.root).registry()
        assert registry.alias_version("champion") == result["version"]

    def _target(self, *, allow_default: bool) -> str | None:
        versions = [v.version for v in Workspace.open(self.root).registry().versions()]
        choices: list[str | None] = [None, *versions] if allow_default else list(versions)
        return self.draw(st.sampled_from(choices), "rollback to")

    def rollback(self) -> None:
        """Plain rollback: an unsafe target is refused and nothing changes."""
        to = self._target(allow_default=True)
        ws = Workspace.open(self.root)
        registry = ws.registry()
        champion = registry.alias_version("champion")
        recorded = deletions_recorded(ws)
        missing = []
        if to is not None:
            missing = missing_deletions(registry.get_version(to).honoured_requests, recorded)
        before = snapshot(self.root)
        refused: Exception | None = None
        try:
            result = rollback_model(str(self.root), to=to)
        except (UnsafeVersionError, RollbackError) as exc:
            # Unsafe; or no earlier version, or a safe one trained on other data or params.
            refused = exc
        if missing:
            assert isinstance(refused, UnsafeVersionError), f"version {to} misses {missing}"
        if refused is not None:
            if isinstance(refused, UnsafeVersionError) and to is not None:
                assert missing, f"version {to} honours every deletion, yet: {refused}"
            assert snapshot(self.root) == before, f"refused ({refused}) but changed"
            return
        if result["noop"]:
            assert snapshot(self.root) == before
            return
        assert result["action"] == "move"
        assert registry.aliases()["champion"] == result["version"]
        assert registry.aliases()["previous"] == champion

    def replay(self) -> None:
        """Rollback --replay: a target that misses deletions comes back without them."""
        to = self._target(allow_default=False)
        registry = Workspace.open(self.root).registry()
        before = snapshot(self.root)
        # Only a target split into other shards is refused, and there is none here.
        result = rollback_model(str(self.root), to=to, replay=True)
        if result["noop"]:
            assert snapshot(self.root) == before
            return
        assert registry.alias_version("champion") == result["version"]
        if result["action"] != "replay":
            return
        version = registry.get_version(result["version"])
        assert version.tag("kind") == "replay"
        assert version.tag("parent_version") == to
        retrained = [r["shard_id"] for r in result["retrained"]]
        shard = retrained[0] if retrained else 0
        certificate = certify_version(Workspace.open(self.root), result["version"], [shard])
        assert certificate.passed, f"replay version {result['version']}, shard {shard}"

    def purge(self) -> None:
        """Purge with a clock past the retention window: every request is due."""
        later = (datetime.now(UTC) + timedelta(days=31)).isoformat()
        purge_superseded(str(self.root), now=later)
        ws = Workspace.open(self.root)
        recorded = deletions_recorded(ws)
        unsafe = {
            v.version: missing
            for v in ws.registry().versions()
            if (missing := missing_deletions(v.honoured_requests, recorded))
        }
        assert not unsafe, f"versions that miss deletions survive the purge: {unsafe}"
        states = ws.ledger.requests()
        assert {r: states[r].state for r in self.requests} == dict.fromkeys(self.requests, "purged")
        report = scan_workspace(ws)
        assert report.clean, [f.to_dict() for f in report.findings]
        assert not report.unverified, report.unverified

    # ----------------------------------------------------------------- invariants
    def champion_never_saw_a_forgotten_record(self) -> None:
        ws = Workspace.open(self.root)
        hashed = ws.settings.hash_record_id
        forgotten_hashes = ws.ensemble.forgotten_hashes()
        assert forgotten_hashes == {hashed(r) for r in self.forgotten}
        champion = ws.registry().get_version("champion")
        trained_on = shard_ids_at(self.root, champion.tag("git_sha"))
        assert not trained_on & self.forgotten, f"version {champion.version}"
        assert not {hashed(r) for r in trained_on} & forgotten_hashes
        assert not set(current_ids(self.root)) & self.forgotten

    def champion_honours_every_deletion(self) -> None:
        ws = Workspace.open(self.root)
        registry = ws.registry()
        recorded = deletions_recorded(ws)
        assert set(recorded) == set(self.requests)
        champion = registry.get_version("champion")
        assert set(recorded) <= set(champion.honoured_requests), (
            f"champion {champion.version} misses "
            f"{missing_deletions(champion.honoured_requests, recorded)}"
        )
        for version in registry.versions():
            if missing_deletions(version.honoured_requests, recorded):
                assert "champion" not in version.aliases, version.version
                assert version.tag("honours_all_deletions") == "false", version.version

    def audits_agree_with_registry_and_ledger(self) -> None:
        ws = Workspace.open(self.root)
        registry = ws.registry()
        versions = {v.version: v for v in registry.versions()}
        champion = registry.alias_version("champion")
        states = ws.ledger.requests()
        for request_id in self.requests:
            audit = audit_request(ws, request_id)
            where = f"request {request_id} ({audit.state})"
            first = audit.first_honouring_version
            assert first is not None, f"{where}: no version honours it"
            if first in versions:
                assert request_id in versions[first].honoured_requests, where
            else:  # the audit keeps its history: a purge deleted it, and the ledger says when
                assert first in audit.versions_purged, f"{where}: version {first} is gone"
            assert audit.gates_passed, where
            served = audit.served_version
            assert served is not None, f"{where}: never served"
            assert served in versions or states[request_id].purged is not None, (
                f"{where}: the ledger says version {served} served it, a version that is "
                "not registered, yet it does not say the request was purged"
            )
            assert audit.champion_version == champion, where
            assert audit.champion_honours, f"{where}: champion {champion} does not honour it"
            assert not audit.ledger_problems, audit.ledger_problems


# Every sequence trains, forgets, then takes each other kind of step once, in drawn order.
LATER_STEPS = ["forget", "forget_again", "retrain", "rollback", "replay", "purge"]


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_compliance_holds_over_random_histories(tmp_path: Path, data: st.DataObject) -> None:
    STATS["sequences"] += 1
    order = data.draw(st.permutations(LATER_STEPS), label="steps")
    root = make_workspace(tmp_path / f"ws-{STATS['sequences']}", **PARAMS)
    history = History(root, data)
    for step in ["train", "forget", *order]:
        history.run(step)
    assert not history.dirty, f"a flow left uncommitted changes: {history.dirty}"


def test_request_for_purged_records_is_served_by_a_registered_version(tmp_path: Path) -> None:
    """A fixed history the random ones rarely reach: a no-op request after a purge.

    Request B supersedes the version that served request A; the purge deletes it. A new
    request for A's records is served already, and must name a version that still exists.
    """
    STATS["sequences"] += 1
    root = make_workspace(tmp_path / "ws", **PARAMS)
    history = History(root)
    history.run("train")
    first, second = (current_ids(root)[:1], current_ids(root)[1:2])
    history.run("forget_ids", first)
    history.run("forget_ids", second)
    history.run("purge")
    history.run("forget_ids", first)
    assert not history.dirty, f"a flow left uncommitted changes: {history.dirty}"


@pytest.fixture(scope="module", autouse=True)
def report_what_ran() -> Iterator[None]:
    """After the module's tests: what the properties covered and how long (shown with -s)."""
    yield
    print(
        f"\ncompliance properties: {STATS['sequences']} sequences, {STATS['steps']} steps "
        f"{STEPS}; {SECONDS['steps']:.0f} s in steps, {SECONDS['checks']:.0f} s in checks"
    )

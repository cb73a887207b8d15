"""Legal holds over random histories: a held record is never erased; a release completes once.

Hypothesis draws sequences of steps over a small pool of records of a real prepared
workspace (real inbox, ledger and shard files; an in-memory registry): place a hold on some
records, release a standing hold, a request for some records arriving in the inbox, a
drain, and a forget run from the command line (the flow's path: `hold_back` first). The
forget is the flow's data half without training (:func:`hold_back`, `receive_requests`,
`apply_batch`, a `served` entry), so an example runs in a fraction of a second. Checked
after every step, under `compliance.holds` `whole` and `partial`:

- no record under a standing hold has left the shard files since the hold was placed, and
  no batch given to the forget named one;
- a request is never served while a hold stands on one of its records (checked when the
  forget is given its batch);
- releasing a hold names exactly the unserved command-line requests it held (run again
  then, as their user is told);
- at the end, once every hold is released and the inbox drained, every request is served
  exactly once (the inbox says `done`, the ledger `served`) and every record it named is
  gone from the data.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unlearn_ops.deletion.drain import drain
from unlearn_ops.deletion.envelope import sign_request
from unlearn_ops.deletion.holds import fold_holds, place_hold, release_hold
from unlearn_ops.deletion.receive import Accepted, receive
from unlearn_ops.deletion.requests import ForgetRequest
from unlearn_ops.testing import InMemoryRegistry
from unlearn_ops.workflow.batch import apply_batch, hold_back, receive_requests
from unlearn_ops.workflow.workspace import Workspace

KEY = "hold-properties-signing-key"
POOL = 6  # records of each of the two shards that the steps draw from


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner as TyperRunner

    from unlearn_ops.cli.app import app

    root = tmp_path_factory.mktemp("holds") / "ws"
    runner = TyperRunner()
    for argv in (
        ["init", str(root), "--shards", "2", "--slices", "2"],
        ["prepare", "-w", str(root)],
    ):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
    return root


def shard_records(root: Path, shard: int) -> list[str]:
    table = pd.read_parquet(root / "data" / "shards" / f"shard-{shard:03d}.parquet")
    return [str(r) for r in table["record_id"]]


def data_records(ws: Workspace) -> set[str]:
    return {r for shard in ws.ensemble.shard_ids for r in shard_records(ws.root, shard)}


class History:
    """A workspace copied from the template, and what the steps did to it."""

    def __init__(self, root: Path, pool: list[str]) -> None:
        self.ws = Workspace.open(root, registry=InMemoryRegistry())
        self.pool = pool
        self.requests: dict[str, list[str]] = {}  # request id -> records
        self.served: list[str] = []
        self.was_held: set[str] = set()
        self.placed: dict[str, set[str]] = {}  # hold id -> records still in the data then

    def active_held(self) -> set[str]:
        now = datetime.now(UTC)
        hashed = {self.ws.settings.hash_record_id(r): r for r in self.pool}
        return {
            hashed[h]
            for hold in fold_holds(self.ws.ledger.entries()).values()
            if hold.status(now) == "active"
            for h in hold.record_hashes
        }

    def forget(self, ws: Workspace, batch: Sequence[ForgetRequest]) -> dict[str, Any]:
        """The data half of `forget_batch`: hold back, receive, remove, serve."""
        kept = hold_back(ws, batch)
        self.was_held.update(kept.held)
        if not kept.proceed:
            return kept.answer()
        held = self.active_held()
        for request in kept.proceed:
            assert not held.intersection(request.record_ids), "a held record was given"
        receive_requests(ws, kept.proceed)
        apply_batch(ws, kept.proceed)
        for request in kept.proceed:
            ws.ledger.append("served", request.request_id, version="0")
            self.served.append(request.request_id)
        return {"version": "0", "requests": [r.request_id for r in kept.proceed]}

    def check(self) -> None:
        """Every standing hold's records that were in the data when it was placed still are.

        Per hold: a record erased after one hold's release and held again later (by a hold
        placed when it was gone) is not a record that left the data under a hold.
        """
        data = data_records(self.ws)
        now = datetime.now(UTC)
        for hold_id, hold in fold_holds(self.ws.ledger.entries()).items():
            if hold.status(now) == "active":
                assert self.placed[hold_id] <= data, "a held record left the data"

    def release(self, hold_id: str) -> None:
        """Release a hold, and run again (as its user is told) each CLI request it names."""
        rerun = release_hold(self.ws, hold_id, reason="lifted").rerun
        states = self.ws.ledger.requests()
        assert all(r.startswith("cli-") and states[r].served is None for r in rerun)
        for request_id in rerun:
            request = ForgetRequest.build(self.requests[request_id], request_id, "erasure")
            with self.ws.lock():
                self.forget(self.ws, [request])


step = st.one_of(
    st.tuples(st.just("hold"), st.sets(st.integers(0, 2 * POOL - 1), min_size=1, max_size=3)),
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.tuples(st.just("request"), st.sets(st.integers(0, 2 * POOL - 1), min_size=1, max_size=3)),
    st.tuples(st.just("cli"), st.sets(st.integers(0, 2 * POOL - 1), min_size=1, max_size=2)),
    st.tuples(st.just("drain"), st.just(0)),
)


@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=3, max_size=12), mode=st.sampled_from(["whole", "partial"]))
def test_held_records_are_never_erased_and_releases_complete_once(
    template: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    steps: list[tuple[str, Any]],
    mode: str,
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_REQUEST_SIGNING_KEY", KEY)
    monkeypatch.delenv("UNLEARN_OPS_APPROVAL_REQUIRED", raising=False)
    root = tmp_path_factory.mktemp("history") / "ws"
    shutil.copytree(template, root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["compliance"]["holds"] = mode
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    pool = shard_records(root, 0)[:POOL] + shard_records(root, 1)[:POOL]
    history = History(root, pool)
    ws = history.ws
    for number, (kind, value) in enumerate(steps):
        if kind == "hold":
            records = [pool[i] for i in sorted(value)]
            hold = place_hold(ws, record_ids=records, reason=f"case {number}", actor="dpo")
            history.placed[hold.hold_id] = set(records) & data_records(ws)
        elif kind == "release":
            standing = sorted(
                h for h, x in fold_holds(ws.ledger.entries()).items() if not x.released_at
            )
            if standing:
                history.release(standing[value % len(standing)])
        elif kind in ("request", "cli"):
            request_id = f"{kind}-{number}"
            records = [pool[i] for i in sorted(value)]
            history.requests[request_id] = records
            if kind == "cli":
                request = ForgetRequest.build(records, request_id, "erasure")
                with ws.lock():
                    history.forget(ws, [request])
            else:
                body = {
                    "request_id": request_id,
                    "record_ids": records,
                    "reason": "GDPR art. 17",
                    "requested_at": "2026-11-20T09:30:00+00:00",
                }
                signed_at = datetime.now(UTC) - timedelta(seconds=1)
                envelope = sign_request(body, KEY, signed_at=signed_at)
                assert isinstance(receive(ws.inbox, envelope, source="test"), Accepted)
        else:
            drain(ws, history.forget)
        history.check()

    # Release every hold: what they held is queued (the inbox) or run again (CLI).
    for hold_id, hold in fold_holds(ws.ledger.entries()).items():
        if hold.released_at is None:
            history.release(hold_id)
    drain(ws, history.forget)
    drain(ws, history.forget)  # nothing is served twice
    history.check()

    originals = [r for r in history.served if not re.search(r"\.unheld(\.\d+)?$", r)]
    assert sorted(originals) == sorted(history.requests), "each request served exactly once"
    assert all(entry.state == "done" for entry in ws.inbox.entries())
    states = ws.ledger.requests()
    assert all(states[r].served is not None for r in history.requests)
    forgotten = {r for records in history.requests.values() for r in records}
    assert not forgotten & data_records(ws)
    assert ws.ledger.verify_chain() == []

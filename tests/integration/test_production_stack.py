"""Deletion requests through the real services, as in production (docs: README, "Production").

infra/launcher.py starts moto's S3/SQS server, an MLflow tracking server (sqlite, artifacts
in S3) and a Prefect server on loopback; a workspace registers its versions on that MLflow
server. Requests then arrive as a privacy system sends them:

- a signed file dropped in the intake bucket (S3 -> SQS -> `unlearn-ops listen`);
- an `unlearn.deletion.requested` event posted to the Prefect server's `POST /api/events`
  (-> the deployment that `unlearn-ops serve` serves);
- a burst of 200 requests with duplicates, and a listener killed in the middle of it.

Every CLI runs as its own process with the stack's settings (stack.env).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pandas as pd
import pytest
import yaml

from unlearn_ops.deletion.envelope import sign_request

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "unlearn-ops")


def _load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "unlearn_ops_infra_launcher_it", ROOT / "infra" / "launcher.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    launcher = _load_launcher()
    started = launcher.Stack.up(tmp_path_factory.mktemp("stack"), timeout=180)
    try:
        print(f"stack start-up seconds: {started.startup_seconds}")
        yield started
    finally:
        started.down()


@pytest.fixture(scope="module")
def env(stack: Any) -> dict[str, str]:
    values = {**os.environ, **stack.env()}
    values.update(
        {
            "UNLEARN_OPS_COALESCE_SECONDS": "3",
            "UNLEARN_OPS_MAX_PARALLEL_SHARDS": "2",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "DVC_NO_ANALYTICS": "1",
        }
    )
    return values


def run_cli(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def workspace(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prod") / "ws"
    run_cli(env, "init", str(root), "--shards", "3", "--slices", "2", "--model-name", "prod")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["training"]["epochs_per_stage"] = 3
    # 3 epochs on digits: accuracy is noisy (about 0.80), and which records a batch forgets
    # depends on when a listener is killed, so the default floor (0.80) failed some batches.
    # These tests are about delivery; the gates have tests of their own.
    params["gates"]["max_accuracy_drop"] = 0.5
    params["gates"]["min_accuracy"] = 0.5
    params["gates"]["fairness"]["enabled"] = False  # per class even more so
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The DVC remote lives on the same S3 endpoint as the artifacts and the requests.
    dvc = str(Path(sys.executable).parent / "dvc")
    for args in (
        ["remote", "add", "-d", "stack", f"s3://{env['UNLEARN_OPS_INTAKE_BUCKET']}/dvc"],
        ["remote", "modify", "stack", "endpointurl", env["AWS_ENDPOINT_URL"]],
        ["remote", "modify", "--local", "stack", "access_key_id", "testing"],
        ["remote", "modify", "--local", "stack", "secret_access_key", "testing"],
    ):
        subprocess.run([dvc, *args], cwd=root, env=env, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qam", "DVC remote in S3"], cwd=root, check=True)
    run_cli(env, "train", "--workspace", str(root), "--no-progress")
    return root


class Records:
    """Hands out record ids not used by another test yet."""

    def __init__(self, root: Path) -> None:
        self.pool = [
            str(r)
            for shard in range(3)
            for r in pd.read_parquet(root / "data" / "shards" / f"shard-{shard:03d}.parquet")[
                "record_id"
            ]
        ]
        self.pool.sort(key=lambda r: (int(r) * 7919) % 1009)  # spread over shards

    def take(self, n: int) -> list[str]:
        taken, self.pool = self.pool[:n], self.pool[n:]
        return taken


@pytest.fixture(scope="module")
def records(workspace: Path) -> Records:
    return Records(workspace)


def signed(env: dict[str, str], request_id: str, record_ids: list[str]) -> dict[str, Any]:
    return sign_request(
        {
            "request_id": request_id,
            "record_ids": record_ids,
            "reason": "GDPR art. 17",
            "requested_at": datetime.now(UTC).isoformat(),
        },
        env["UNLEARN_OPS_REQUEST_SIGNING_KEY"],
    )


def s3(env: dict[str, str], service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def drop(env: dict[str, str], envelope: dict[str, Any], key: str | None = None) -> None:
    name = key or f"{envelope['request']['request_id']}.json"
    s3(env, "s3").put_object(
        Bucket=env["UNLEARN_OPS_INTAKE_BUCKET"],
        Key=env["UNLEARN_OPS_INTAKE_PREFIX"] + name,
        Body=json.dumps(envelope).encode(),
    )


def queue_depth(env: dict[str, str]) -> int:
    attributes = s3(env, "sqs").get_queue_attributes(
        QueueUrl=env["UNLEARN_OPS_INTAKE_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def versions(env: dict[str, str], workspace: Path) -> list[dict[str, Any]]:
    return json.loads(run_cli(env, "versions", "--workspace", str(workspace), "--json"))["versions"]


def champion_tags(env: dict[str, str], workspace: Path) -> dict[str, str]:
    done = subprocess.run(
        [CLI, "show", "champion", "--workspace", str(workspace), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return json.loads(done.stdout)["tags"] if done.returncode == 0 else {}


def honoured(env: dict[str, str], workspace: Path) -> set[str]:
    return set(json.loads(champion_tags(env, workspace).get("unlearn.honoured_requests", "[]")))


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, logs: Path | None = None
) -> float:
    """Seconds until `condition` held; on a timeout, the tails of the CLIs' logs in `logs`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(1.0)
    tails = [
        f"--- {log.name}:\n{log.read_text(errors='replace')[-2000:]}"
        for log in sorted(logs.glob("*.log") if logs else [])
    ]
    raise AssertionError("\n".join([f"not within {timeout} s: {what}", *tails]))


def ledger_states(workspace: Path) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for line in (workspace / "ledger.jsonl").read_text().splitlines():
        entry = json.loads(line)
        states.setdefault(entry["request_id"], []).append(entry["event"])
    return states


def spawn(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [CLI, *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    return process.wait(timeout=120)


def test_a_signed_file_in_s3_becomes_a_champion(
    env: dict[str, str], workspace: Path, records: Records, tmp_path: Path
) -> None:
    request_id = f"s3-{uuid.uuid4().hex[:8]}"
    forgotten = records.take(2)
    drop(env, signed(env, request_id, forgotten))
    forged = signed(env, "s3-forged", records.take(1))
    forged["request"]["record_ids"] = records.take(1)  # changed after signing
    drop(env, forged, "forged.json")
    listener = spawn(
        env, "listen", "--workspace", str(workspace), "--wait-seconds", "1", log=tmp_path / "l.log"
    )
    try:
        took = wait_for(
            lambda: request_id in honoured(env, workspace),
            240,
            "a champion tagged with the request",
            logs=tmp_path,
        )
        print(f"S3 file -> champion in {took:.1f} s")
    finally:
        code = stop(listener)
    assert code == 0, (tmp_path / "l.log").read_text()[-3000:]
    assert ledger_states(workspace)[request_id] == ["received", "applied", "served"]
    assert queue_depth(env) == 0
    bucket = env["UNLEARN_OPS_INTAKE_BUCKET"]
    keys = [
        o["Key"]
        for o in s3(env, "s3").list_objects_v2(Bucket=bucket).get("Contents", [])
        if not o["Key"].startswith("mlartifacts/")
    ]
    assert f"{env['UNLEARN_OPS_INTAKE_PREFIX']}{request_id}.json" not in keys  # raw ids gone
    assert any(k.startswith("dvc/") for k in keys)  # the data revisions, pushed by DVC
    assert "rejected/forged.json" in keys
    assert "rejected/forged.json.reason.json" in keys
    reason = s3(env, "s3").get_object(Bucket=bucket, Key="rejected/forged.json.reason.json")
    assert json.loads(reason["Body"].read())["kind"] == "forged"
    audit = json.loads(run_cli(env, "audit", request_id, "--workspace", str(workspace), "--json"))
    assert audit["state"] == "served"


def test_a_prefect_event_becomes_a_champion_through_the_served_deployment(
    env: dict[str, str], workspace: Path, records: Records, tmp_path: Path
) -> None:
    server = spawn(
        env, "serve", "--workspace", str(workspace), "--sweep-seconds", "0", log=tmp_path / "s.log"
    )
    try:
        # The deployment and its trigger exist once `serve` registered them.
        def deployed() -> bool:
            request = urllib.request.Request(
                env["PREFECT_API_URL"] + "/deployments/filter", data=b"{}", method="POST"
            )
            request.add_header("Content-Type", "application/json")
            with urllib.request.urlopen(request, timeout=5) as response:
                return any(d["name"].startswith("forget-on") for d in json.load(response))

        wait_for(deployed, 120, "the deployment", logs=tmp_path)
        time.sleep(3)  # the automation is created right after the deployment
        ids = [f"ev-{uuid.uuid4().hex[:8]}" for _ in range(6)]
        events = []
        for request_id in ids:
            envelope = signed(env, request_id, records.take(1))
            events.append(
                {
                    "id": str(uuid.uuid4()),
                    "occurred": datetime.now(UTC).isoformat(),
                    "event": "unlearn.deletion.requested",
                    "resource": {"prefect.resource.id": "unlearn.workspace.prod"},
                    "payload": envelope,
                }
            )
        events.append(events[0] | {"id": str(uuid.uuid4())})  # a duplicate delivery
        # Any language can produce: POST /api/events with a JSON list of events.
        post = urllib.request.Request(
            env["PREFECT_API_URL"] + "/events", data=json.dumps(events).encode(), method="POST"
        )
        post.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(post, timeout=10) as response:
            assert response.status == 204
        took = wait_for(
            lambda: set(ids) <= honoured(env, workspace),
            300,
            "a champion honouring every event's request",
            logs=tmp_path,
        )
        print(f"7 events -> champion in {took:.1f} s")
    finally:
        stop(server, signal.SIGINT)
    states = ledger_states(workspace)
    assert all(states[r] == ["received", "applied", "served"] for r in ids)
    made = [v for v in versions(env, workspace) if set(ids) & set(v["requests"].split(","))]
    assert len(made) <= 2, "events within the window are coalesced into one run"


def inbox_states(workspace: Path) -> dict[str, int]:
    path = workspace / ".unlearn-ops" / "inbox.sqlite"
    if not path.exists():
        return {}
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall())


def done(workspace: Path, ids: set[str]) -> int:
    path = workspace / ".unlearn-ops" / "inbox.sqlite"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        rows = db.execute("SELECT request_id FROM requests WHERE state = 'done'").fetchall()
    return len(ids & {row[0] for row in rows})


def forget_versions(env: dict[str, str], workspace: Path, ids: set[str]) -> list[dict[str, Any]]:
    return [v for v in versions(env, workspace) if ids & set(v["requests"].split(","))]


def assert_each_served_once(workspace: Path, ids: set[str]) -> None:
    states = ledger_states(workspace)
    for request_id in ids:
        events = states.get(request_id, [])
        assert events.count("received") == 1, (request_id, events)
        assert events.count("served") == 1, (request_id, events)
        assert "failed" not in events, (request_id, events)


def test_a_burst_of_200_requests_is_a_few_retraining_runs(
    env: dict[str, str], workspace: Path, records: Records, tmp_path: Path
) -> None:
    before = {v["version"] for v in versions(env, workspace)}
    distinct = [(f"burst-{i:03d}", records.take(1)) for i in range(180)]
    envelopes = [signed(env, request_id, ids) for request_id, ids in distinct]
    listener = spawn(
        env, "listen", "--workspace", str(workspace), "--wait-seconds", "1", log=tmp_path / "b.log"
    )
    try:
        start = time.monotonic()
        for envelope in envelopes:
            drop(env, envelope)
        for envelope in envelopes[:20]:  # delivered twice: the privacy system retried
            drop(env, envelope, f"retry-{envelope['request']['request_id']}.json")
        ids = {request_id for request_id, _ in distinct}
        wait_for(
            lambda: done(workspace, ids) == 180, 600, "every burst request done", logs=tmp_path
        )
        took = time.monotonic() - start
        wait_for(lambda: queue_depth(env) == 0, 60, "every message acknowledged", logs=tmp_path)
    finally:
        assert stop(listener) == 0, (tmp_path / "b.log").read_text()[-3000:]
    assert_each_served_once(workspace, ids)
    assert ids <= honoured(env, workspace)
    made = forget_versions(env, workspace, ids)
    assert {v["version"] for v in made}.isdisjoint(before)
    assert sum(len(set(v["requests"].split(",")) & ids) for v in made) == 180  # none twice
    assert len(made) <= 10, f"{len(made)} retraining runs for 200 requests"
    retrains = sum(
        len(json.loads(show(env, workspace, v["version"])["tags"]["unlearn.shards_retrained"]))
        for v in made
    )
    print(
        f"burst: 200 deliveries (180 requests + 20 duplicates) -> {len(made)} retraining "
        f"run(s), {retrains} shard retrainings, {took:.1f} s to all served"
    )


def show(env: dict[str, str], workspace: Path, version: str) -> dict[str, Any]:
    return json.loads(run_cli(env, "show", version, "--workspace", str(workspace), "--json"))


def test_a_listener_killed_mid_way_finishes_every_request_exactly_once(
    env: dict[str, str], workspace: Path, records: Records, tmp_path: Path
) -> None:
    entries_before = sum(inbox_states(workspace).values())
    distinct = [(f"kill-{i:02d}", records.take(1)) for i in range(40)]
    ids = {request_id for request_id, _ in distinct}
    for request_id, record_ids in distinct:
        drop(env, signed(env, request_id, record_ids))
    args = ["listen", "--workspace", str(workspace), "--wait-seconds", "1"]
    args += ["--visibility-timeout", "10"]

    # Killed while taking messages in: some recorded, the rest still in the queue.
    first = spawn(env, *args, log=tmp_path / "1.log")
    wait_for(
        lambda: sum(inbox_states(workspace).values()) > entries_before,
        120,
        "intake started",
        logs=tmp_path,
    )
    stop(first, signal.SIGKILL)
    # Killed again in the middle of the drain (requests claimed, version not registered).
    second = spawn(env, *args, log=tmp_path / "2.log")
    wait_for(
        lambda: inbox_states(workspace).get("processing", 0) > 0,
        180,
        "a drain started",
        logs=tmp_path,
    )
    time.sleep(2)
    stop(second, signal.SIGKILL)
    assert done(workspace, ids) < 40
    # Restarted: it finishes everything, exactly once.
    third = spawn(env, *args, log=tmp_path / "3.log")
    try:
        wait_for(
            lambda: done(workspace, ids) == 40,
            400,
            "every request done after restarts",
            logs=tmp_path,
        )
    finally:
        assert stop(third) == 0, (tmp_path / "3.log").read_text()[-3000:]
    assert_each_served_once(workspace, ids)
    assert ids <= honoured(env, workspace)
    made = forget_versions(env, workspace, ids)
    assert sum(len(set(v["requests"].split(",")) & ids) for v in made) == 40
    wait_for(lambda: queue_depth(env) == 0, 30, "the queue empty", logs=tmp_path)

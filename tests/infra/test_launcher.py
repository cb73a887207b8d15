"""infra/launcher.py against real processes: moto, an MLflow server and a Prefect server.

The stack starts once per module, through the command line in another process, as a user
starts it; the tests then drive it through the files it writes (stack.json, stack.env)
and ``Stack.load``. The last test of the stack stops it from those files. The failure
tests start services in this process and check that nothing of them is left.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from unlearn_ops.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

LAUNCHER = Path(__file__).resolve().parents[2] / "infra" / "launcher.py"
REQUIRED_KEYS = {
    "UNLEARN_OPS_TRACKING_URI",
    "PREFECT_API_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "UNLEARN_OPS_INTAKE_BUCKET",
    "UNLEARN_OPS_INTAKE_PREFIX",
    "UNLEARN_OPS_INTAKE_QUEUE_URL",
    "UNLEARN_OPS_REQUEST_SIGNING_KEY",
    "UNLEARN_OPS_ID_HASH_KEY",
}


def _load_launcher() -> ModuleType:
    """infra/launcher.py as a module (it is not part of the installed package)."""
    spec = importlib.util.spec_from_file_location("unlearn_ops_infra_launcher", LAUNCHER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


launcher = _load_launcher()


def _cli(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LAUNCHER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _get_status(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return int(response.status)


def _port_closed(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _aws_client(env: dict[str, str], service: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    ).client(service, endpoint_url=env["AWS_ENDPOINT_URL"])


def _parse_env_file(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"export ([A-Z0-9_]+)=(.*)", line)
        if match:
            found[match[1]] = match[2].strip("'")
    return found


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A stack started by `launcher.py up` in another process; stopped at the end."""
    directory = tmp_path_factory.mktemp("stack")
    result = _cli("up", "--dir", str(directory))
    if result.returncode != 0:
        pytest.fail(f"launcher up failed:\n{result.stdout}\n{result.stderr}")
    try:
        assert "source " + str(directory / "stack.env") in result.stdout
        for name in ("moto", "mlflow", "prefect", "total"):
            assert re.search(rf"{name}\s.*started in\s+\d+\.\d+ s", result.stdout), result.stdout
        yield directory
    finally:
        if (directory / "stack.json").exists():
            launcher.Stack.load(directory).down()


@pytest.fixture(scope="module")
def stack(stack_dir: Path) -> Any:
    """A handle on the running stack, from its stack.json."""
    return launcher.Stack.load(stack_dir)


def test_every_service_answers_its_health_check(stack: Any, stack_dir: Path) -> None:
    urls = stack.urls
    assert set(urls) == {"moto", "mlflow", "prefect"}
    assert _get_status(urls["moto"] + "/moto-api/") == 200
    assert _get_status(urls["mlflow"] + "/health") == 200
    assert _get_status(urls["prefect"] + "/api/health") == 200
    assert stack.health() == {"moto": True, "mlflow": True, "prefect": True}
    assert all(seconds > 0 for seconds in stack.startup_seconds.values())
    assert set(stack.startup_seconds) == {"moto", "mlflow", "prefect"}
    assert 5000 not in {svc.port for svc in stack.services.values()}

    status = _cli("status", "--dir", str(stack_dir), timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("healthy") == 3


def test_stack_env_holds_the_settings_and_is_private(stack: Any, stack_dir: Path) -> None:
    env_file = stack_dir / "stack.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    exported = _parse_env_file(env_file)
    assert set(exported) >= REQUIRED_KEYS
    assert exported == stack.env()
    assert exported["UNLEARN_OPS_TRACKING_URI"] == stack.urls["mlflow"]
    assert exported["PREFECT_API_URL"] == stack.urls["prefect"] + "/api"
    assert exported["AWS_ENDPOINT_URL"] == stack.urls["moto"]
    assert exported["UNLEARN_OPS_INTAKE_BUCKET"] == "unlearn-ops"
    assert exported["UNLEARN_OPS_INTAKE_PREFIX"] == "deletion-requests/"
    assert exported["UNLEARN_OPS_INTAKE_QUEUE_URL"].endswith("/unlearn-ops-deletions")
    for key in ("UNLEARN_OPS_REQUEST_SIGNING_KEY", "UNLEARN_OPS_ID_HASH_KEY"):
        assert re.fullmatch(r"[0-9a-f]{64}", exported[key])
    assert exported["UNLEARN_OPS_REQUEST_SIGNING_KEY"] != exported["UNLEARN_OPS_ID_HASH_KEY"]

    record = json.loads((stack_dir / "stack.json").read_text())
    assert record["queue_url"] == exported["UNLEARN_OPS_INTAKE_QUEUE_URL"]
    assert {s["name"] for s in record["services"]} == {"moto", "mlflow", "prefect"}
    assert "UNLEARN_OPS_REQUEST_SIGNING_KEY" not in json.dumps(record)


def test_a_request_file_in_the_bucket_notifies_the_queue(stack: Any) -> None:
    env = stack.env()
    s3 = _aws_client(env, "s3")
    sqs = _aws_client(env, "sqs")
    queue_url = env["UNLEARN_OPS_INTAKE_QUEUE_URL"]
    s3.put_object(Bucket="unlearn-ops", Key="elsewhere/y.json", Body=b"{}")
    s3.put_object(Bucket="unlearn-ops", Key="deletion-requests/x.json", Body=b"{}")

    keys: list[str] = []
    test_events: list[str] = []

    def request_key_arrived() -> bool:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2)
        for message in answer.get("Messages", []):
            body = json.loads(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            if body.get("Event") == "s3:TestEvent":
                test_events.append(body["Event"])
                continue
            for event in body["Records"]:
                assert event["eventName"].startswith("ObjectCreated:")
                keys.append(unquote_plus(event["s3"]["object"]["key"]))
        return "deletion-requests/x.json" in keys

    wait_until(request_key_arrived, timeout=30, interval=0)
    s3.close()
    sqs.close()
    assert len(test_events) == 1
    assert keys == ["deletion-requests/x.json"]  # the prefix filter kept elsewhere/ out


def test_mlflow_artifacts_land_in_the_bucket(stack: Any, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stack.urls["mlflow"])
    experiment_id = client.create_experiment("launcher-test")
    run = client.create_run(experiment_id)
    artifact = tmp_path / "hello.txt"
    artifact.write_text("forget me not\n")
    client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")

    s3 = _aws_client(stack.env(), "s3")
    listing = s3.list_objects_v2(Bucket="unlearn-ops", Prefix="mlartifacts/")
    keys = [item["Key"] for item in listing.get("Contents", [])]
    expected = f"mlartifacts/{experiment_id}/{run.info.run_id}/artifacts/hello.txt"
    assert expected in keys
    body = s3.get_object(Bucket="unlearn-ops", Key=expected)["Body"].read()
    s3.close()
    assert body == b"forget me not\n"


def test_up_refuses_a_directory_with_a_live_stack(stack: Any, stack_dir: Path) -> None:
    before = (stack_dir / "stack.json").read_text()
    with pytest.raises(launcher.StackError, match="already running"):
        launcher.Stack.up(stack_dir)
    result = _cli("up", "--dir", str(stack_dir), timeout=60)
    assert result.returncode == 1
    assert "already running" in result.stderr
    assert (stack_dir / "stack.json").read_text() == before
    assert stack.health() == {"moto": True, "mlflow": True, "prefect": True}


def test_down_from_the_files_leaves_nothing(stack_dir: Path) -> None:
    """Last test of the shared stack: it stops it."""
    stack = launcher.Stack.load(stack_dir)
    services = list(stack.services.values())
    stack.down()
    for svc in services:
        assert _group_gone(svc.pgid), f"{svc.name}: process group {svc.pgid} is still there"
        assert _port_closed(svc.port), f"{svc.name}: port {svc.port} still accepts connections"
    assert not (stack_dir / "stack.json").exists()
    assert not (stack_dir / "stack.env").exists()
    stack.down()  # idempotent
    result = _cli("down", "--dir", str(stack_dir), timeout=60)
    assert result.returncode == 0
    assert "nothing to stop" in result.stdout


def _assert_all_stopped(stack: Any) -> None:
    for svc in stack.services.values():
        assert _group_gone(svc.pgid), f"{svc.name}: process group {svc.pgid} survived"
    assert not (stack.directory / "stack.json").exists()


def test_a_service_that_exits_stops_the_others_and_shows_its_log(tmp_path: Path) -> None:
    stack = launcher.Stack(tmp_path)
    failing = [sys.executable, "-c", "import sys; print('mlflow exploded'); sys.exit(3)"]
    with pytest.raises(launcher.StackError) as raised:
        stack.start(commands={"mlflow": failing}, timeout=60)
    message = str(raised.value)
    assert "mlflow exited with code 3" in message
    assert "mlflow exploded" in message  # the tail of logs/mlflow.log
    assert str(tmp_path / "logs" / "mlflow.log") in message
    assert set(stack.services) == {"moto", "mlflow", "prefect"}
    _assert_all_stopped(stack)


def test_a_taken_port_stops_the_others(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        stack = launcher.Stack(tmp_path)
        with pytest.raises(launcher.StackError, match=r"prefect exited") as raised:
            stack.start(ports={"prefect": port}, timeout=90)
    assert f"Port {port} is already in use" in str(raised.value)
    assert set(stack.services) == {"moto", "mlflow", "prefect"}
    _assert_all_stopped(stack)


def test_a_missing_executable_stops_the_others(tmp_path: Path) -> None:
    stack = launcher.Stack(tmp_path)
    with pytest.raises(launcher.StackError, match="mlflow: cannot start"):
        stack.start(commands={"mlflow": [str(tmp_path / "no-such-mlflow")]}, timeout=60)
    assert set(stack.services) == {"moto"}
    _assert_all_stopped(stack)
    with pytest.raises(launcher.StackError, match="unknown service"):
        stack.start(ports={"minio": 9000})


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="proc(5) is Linux only")
def test_start_ticks_match_what_earlier_launchers_recorded_from_proc() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stat_line = Path(f"/proc/{child.pid}/stat").read_text()
        recorded_by_proc = int(stat_line.rsplit(")", 1)[-1].split()[19])  # field 22
        assert launcher._start_ticks(child.pid) == recorded_by_proc
    finally:
        child.kill()
        child.wait(10)
    assert launcher._start_ticks(child.pid) is None


def test_secrets_are_read_back_from_a_stack_env_as_a_shell_reads_it(tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    env_file.write_text(
        "# a comment\n"
        "export UNLEARN_OPS_TRACKING_URI=http://127.0.0.1:5050\n"
        "export UNLEARN_OPS_REQUEST_SIGNING_KEY=" + "ab" * 32 + "\n"
        "export UNLEARN_OPS_ID_HASH_KEY='key with spaces'\n"
    )
    assert launcher._read_secrets(env_file) == {
        "UNLEARN_OPS_REQUEST_SIGNING_KEY": "ab" * 32,
        "UNLEARN_OPS_ID_HASH_KEY": "key with spaces",
    }
    assert launcher._read_secrets(tmp_path / "gone.env") == {}

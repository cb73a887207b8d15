#!/usr/bin/env python3
"""Start the unlearn-ops service stack on 127.0.0.1 without Docker.

Three real servers, each in its own process group, logs under ``DIR/logs``:

* **moto** — an S3 + SQS endpoint. The launcher creates the intake bucket, the deletion
  queue, and the bucket notification that sends ``s3:ObjectCreated:*`` events for keys
  under the intake prefix to the queue (moto first sends one ``s3:TestEvent``).
* **mlflow** — a tracking server on a sqlite store (``DIR/mlflow.db``) whose artifacts
  go to ``s3://BUCKET/mlartifacts`` in moto. Clients log artifacts through the server's
  proxy (``mlflow-artifacts:`` URIs) and need no AWS credentials.
* **prefect** — a Prefect server with its own home and sqlite database under
  ``DIR/prefect``.

Usage::

    python infra/launcher.py up --dir .stack      # start, print start-up times
    source .stack/stack.env                       # point unlearn-ops at the stack
    python infra/launcher.py status --dir .stack  # health of each service
    python infra/launcher.py down --dir .stack    # stop every process group

``DIR/stack.json`` records the processes (so another process can stop them) and
``DIR/stack.env`` (mode 0600) holds the settings plus two secrets, generated on the
directory's first start and kept in ``DIR/secrets.json`` (0600) for later starts.

This file is not part of the installed package (tests load it by path), but it runs in
the project's environment: it uses boto3, python-dotenv and the package's server-process
helper (:mod:`unlearn_ops.adapters.process`), and ``mlflow`` and ``prefect`` are run from
the same environment as the Python that runs this file.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypedDict, Unpack

import boto3
import psutil
from dotenv import dotenv_values

from unlearn_ops.adapters.process import (
    ServerProcess,
    group_alive,
    http_ok,
    process_started_at,
    stop_groups,
)
from unlearn_ops.atomic import write_atomic
from unlearn_ops.waiting import wait_until

__all__ = [
    "DEFAULT_BUCKET",
    "DEFAULT_PREFIX",
    "DEFAULT_QUEUE",
    "SERVICE_NAMES",
    "Service",
    "Stack",
    "StackError",
    "main",
]

DEFAULT_BUCKET = "unlearn-ops"
DEFAULT_QUEUE = "unlearn-ops-deletions"
DEFAULT_PREFIX = "deletion-requests/"
DEFAULT_TIMEOUT = 120.0
HOST = "127.0.0.1"
AWS_KEY = "testing"
AWS_REGION = "us-east-1"
ARTIFACTS_PREFIX = "mlartifacts"

#: Start order: moto first (MLflow needs the bucket), then MLflow and Prefect together.
SERVICE_NAMES: tuple[str, ...] = ("moto", "mlflow", "prefect")
HEALTH_PATHS: dict[str, str] = {"moto": "/moto-api/", "mlflow": "/health", "prefect": "/api/health"}
STACK_JSON = "stack.json"
STACK_ENV = "stack.env"
SECRETS_FILE = "secrets.json"
SECRET_NAMES = ("UNLEARN_OPS_REQUEST_SIGNING_KEY", "UNLEARN_OPS_ID_HASH_KEY")
LOG_TAIL_LINES = 40
# Ports that other tools take by default; never hand them out.
_RESERVED_PORTS = frozenset({4200, 5000})


class StackError(RuntimeError):
    """The stack could not be started, found or stopped; the message says why."""


@dataclass
class Service:
    """One running server: where it listens, which process group it is, where it logs."""

    name: str
    port: int
    pid: int
    pgid: int
    log: Path
    health_path: str
    start_ticks: int | None = None
    startup_seconds: float | None = None
    server: ServerProcess | None = field(default=None, repr=False, compare=False)

    @property
    def url(self) -> str:
        """Base URL of the server on loopback."""
        return f"http://{HOST}:{self.port}"

    @property
    def health_url(self) -> str:
        """URL that answers 200 once the server is ready."""
        return self.url + self.health_path

    def healthy(self, timeout: float = 2.0) -> bool:
        """Whether the health endpoint answers 200 now."""
        return http_ok(self.health_url, timeout)

    def to_json(self) -> dict[str, Any]:
        """The record kept in stack.json."""
        return {
            "name": self.name,
            "url": self.url,
            "port": self.port,
            "pid": self.pid,
            "pgid": self.pgid,
            "start_ticks": self.start_ticks,
            "startup_seconds": self.startup_seconds,
            "log": str(self.log),
            "health_url": self.health_url,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Service:
        """A service record read back from stack.json (without a process handle)."""
        name = str(data["name"])
        return cls(
            name=name,
            port=int(data["port"]),
            pid=int(data["pid"]),
            pgid=int(data["pgid"]),
            log=Path(data["log"]),
            health_path=HEALTH_PATHS.get(name, "/"),
            start_ticks=None if data.get("start_ticks") is None else int(data["start_ticks"]),
            startup_seconds=(
                None if data.get("startup_seconds") is None else float(data["startup_seconds"])
            ),
        )


class StackNames(TypedDict, total=False):
    """The names a stack's services use (defaults: DEFAULT_BUCKET, _QUEUE, _PREFIX).

    Attributes:
        bucket: S3 bucket for deletion requests and MLflow artifacts.
        queue: SQS queue receiving the bucket's object-created notifications.
        prefix: key prefix of deletion requests in the bucket.
    """

    bucket: str
    queue: str
    prefix: str


class Stack:
    """The moto + MLflow + Prefect stack in one directory.

    Start it with :meth:`up` (or construct and :meth:`start`), stop it with :meth:`down`
    or by leaving a ``with`` block; :meth:`load` rebuilds a handle from ``stack.json`` so
    that another process can stop a stack it did not start.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        bucket: str = DEFAULT_BUCKET,
        queue: str = DEFAULT_QUEUE,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.bucket = bucket
        self.queue = queue
        self.prefix = prefix
        self.queue_url: str | None = None
        self.services: dict[str, Service] = {}
        self.total_startup_seconds: float | None = None
        self._secrets: dict[str, str] = {}
        self._spawned_at: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def up(
        cls,
        directory: str | os.PathLike[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ports: Mapping[str, int] | None = None,
        commands: Mapping[str, Sequence[str]] | None = None,
        **names: Unpack[StackNames],
    ) -> Stack:
        """Start a stack in ``directory`` and return it once every service is healthy.

        Args:
            directory: where stack.json, stack.env, the logs and the databases go.
            names: `bucket`, `queue` and `prefix`, as for the constructor.
            timeout: seconds each service may take to answer its health check.
            ports: fixed ports by service name; the others get free ports.
            commands: argv overrides by service name (``{port}`` and ``{dir}`` are
                substituted), for debugging a service or testing a failing one.

        Raises:
            StackError: a live stack already runs in ``directory``, or a service exited
                or stayed unhealthy (everything started is stopped first).
        """
        stack = cls(directory, **names)
        stack.start(timeout=timeout, ports=ports, commands=commands)
        return stack

    def start(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ports: Mapping[str, int] | None = None,
        commands: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Start the services, provision S3/SQS, and write stack.json and stack.env.

        See :meth:`up` for the arguments and errors.
        """
        if self.alive():
            raise StackError(f"this handle's stack in {self.directory} is still running")
        self.services = {}
        self._spawned_at = {}
        unknown = set(ports or {}).union(commands or {}).difference(SERVICE_NAMES)
        if unknown:
            raise StackError(
                f"unknown service name(s) {sorted(unknown)}; known: {list(SERVICE_NAMES)}"
            )
        self._refuse_if_running()
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        (self.directory / "prefect").mkdir(parents=True, exist_ok=True)
        # Keep the stack's files out of git wherever the directory is.
        (self.directory / ".gitignore").write_text("*\n")
        chosen = _choose_ports(ports or {})
        began = time.monotonic()
        try:
            self._spawn("moto", chosen["moto"], commands)
            self._wait_healthy(["moto"], timeout)
            self._provision()
            self._spawn("mlflow", chosen["mlflow"], commands)
            self._spawn("prefect", chosen["prefect"], commands)
            self._wait_healthy(["mlflow", "prefect"], timeout)
        except BaseException:
            # Stop what was started; the records stay in self.services for inspection.
            self._stop(timeout=10.0)
            raise
        self.total_startup_seconds = round(time.monotonic() - began, 3)
        self._secrets = _load_or_create_secrets(self.directory / SECRETS_FILE)
        self._write_files()

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Stack:
        """A handle on the stack recorded in ``directory/stack.json`` (started elsewhere).

        Raises:
            StackError: there is no readable stack.json in ``directory``.
        """
        path = Path(directory).resolve() / STACK_JSON
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise StackError(
                f"no stack recorded in {path.parent} ({STACK_JSON} is missing)"
            ) from None
        except (OSError, ValueError) as exc:
            raise StackError(f"cannot read {path}: {exc}") from exc
        stack = cls(
            path.parent,
            bucket=data.get("bucket", DEFAULT_BUCKET),
            queue=data.get("queue", DEFAULT_QUEUE),
            prefix=data.get("prefix", DEFAULT_PREFIX),
        )
        stack.queue_url = data.get("queue_url")
        stack.total_startup_seconds = data.get("total_startup_seconds")
        stack.services = {s["name"]: Service.from_json(s) for s in data.get("services", [])}
        stack._secrets = _read_secrets(path.parent / STACK_ENV)
        return stack

    def down(self, timeout: float = 15.0) -> None:
        """Stop every process group of the stack; idempotent.

        Each group gets SIGTERM, then SIGKILL if it is still there after ``timeout``
        seconds. stack.json and stack.env are removed; the logs, the databases and
        secrets.json stay for the next ``up`` in the same directory.

        Raises:
            StackError: a process group survived SIGKILL.
        """
        survivors = self._stop(timeout=timeout)
        if survivors:
            raise StackError(
                "process groups survived SIGKILL: "
                + ", ".join(f"{s.name} (pgid {s.pgid})" for s in survivors)
            )
        for name in (STACK_JSON, STACK_ENV):
            path = self.directory / name
            if self._recorded_here(path):
                path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        if not self.alive():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    # ------------------------------------------------------------------ queries

    @property
    def urls(self) -> dict[str, str]:
        """Base URL of each service by name."""
        return {name: svc.url for name, svc in self.services.items()}

    @property
    def startup_seconds(self) -> dict[str, float]:
        """Seconds from spawn to healthy, by service name."""
        return {
            name: svc.startup_seconds
            for name, svc in self.services.items()
            if svc.startup_seconds is not None
        }

    @property
    def env_file(self) -> Path:
        """The shell file with the settings: ``source`` it."""
        return self.directory / STACK_ENV

    def env(self) -> dict[str, str]:
        """The settings a workspace or a request producer needs to use this stack."""
        if not self.services:
            raise StackError(f"the stack in {self.directory} is not running")
        moto, mlflow, prefect = (self.services[n] for n in SERVICE_NAMES)
        settings = {
            "UNLEARN_OPS_TRACKING_URI": mlflow.url,
            "PREFECT_API_URL": f"{prefect.url}/api",
            **_s3_env(moto.url),
            "UNLEARN_OPS_INTAKE_BUCKET": self.bucket,
            "UNLEARN_OPS_INTAKE_PREFIX": self.prefix,
            "UNLEARN_OPS_INTAKE_QUEUE_URL": self.queue_url or "",
        }
        settings.update(self._secrets)
        return settings

    def health(self, timeout: float = 2.0) -> dict[str, bool]:
        """Whether each service's health endpoint answers 200 now."""
        return {name: svc.healthy(timeout) for name, svc in self.services.items()}

    def alive(self) -> bool:
        """Whether any process group of this stack still has a running process."""
        return any(_owns_group(svc) for svc in self.services.values())

    # ------------------------------------------------------------------ internals

    def _refuse_if_running(self) -> None:
        try:
            recorded = Stack.load(self.directory)
        except StackError:
            return
        if recorded.alive():
            groups = ", ".join(f"{s.name} pid {s.pid}" for s in recorded.services.values())
            raise StackError(
                f"a stack is already running in {self.directory} ({groups}); stop it with "
                f"`python infra/launcher.py down --dir {self.directory}`"
            )

    def _command(self, name: str, port: int) -> tuple[list[str], dict[str, str]]:
        """argv and environment of one service."""
        env = _child_env()
        moto_url = self.services["moto"].url if "moto" in self.services else ""
        if name == "moto":
            argv = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
        elif name == "mlflow":
            argv = [
                *_tool("mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.directory / 'mlflow.db'}",
                "--artifacts-destination",
                f"s3://{self.bucket}/{ARTIFACTS_PREFIX}",
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                "1",
            ]
            env.update(
                MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
                MLFLOW_S3_ENDPOINT_URL=moto_url,
                **_s3_env(moto_url),
            )
        elif name == "prefect":
            home = self.directory / "prefect"
            argv = [*_tool("prefect"), "server", "start", "--host", HOST, "--port", str(port)]
            env.update(
                PREFECT_HOME=str(home),
                PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
                PREFECT_SERVER_ANALYTICS_ENABLED="false",
            )
        else:  # pragma: no cover - guarded by start()
            raise StackError(f"unknown service {name!r}")
        return argv, env

    def _spawn(self, name: str, port: int, commands: Mapping[str, Sequence[str]] | None) -> None:
        argv, env = self._command(name, port)
        if commands and name in commands:
            argv = [str(a).format(port=port, dir=self.directory) for a in commands[name]]
        log = self.directory / "logs" / f"{name}.log"
        with log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv)}\n".encode())
        server = ServerProcess(
            argv,
            health_url=f"http://{HOST}:{port}{HEALTH_PATHS[name]}",
            log_path=log,
            env=env,
            cwd=self.directory,
        )
        try:
            server.start()
        except OSError as exc:
            raise StackError(f"{name}: cannot start {shlex.join(argv)}: {exc}") from exc
        self.services[name] = Service(
            name=name,
            port=port,
            pid=server.pid,
            pgid=server.pid,  # a new session: the child leads its own group
            log=log,
            health_path=HEALTH_PATHS[name],
            start_ticks=_start_ticks(server.pid),
            server=server,
        )
        self._spawned_at[name] = time.monotonic()

    def _wait_healthy(self, names: Sequence[str], timeout: float) -> None:
        """Poll the health endpoints of ``names`` together until each answers 200."""
        pending = list(names)

        def all_healthy() -> bool:
            for name in list(pending):
                svc = self.services[name]
                assert svc.server is not None  # noqa: S101 - spawned by this handle
                if not svc.server.running:
                    raise StackError(
                        f"{name} exited with code {svc.server.returncode} before it became "
                        f"healthy ({svc.health_url})\n{_log_tail(svc.log)}"
                    )
                if svc.healthy(timeout=1.0):
                    svc.startup_seconds = round(time.monotonic() - self._spawned_at[name], 3)
                    pending.remove(name)
            return not pending

        # Each service gets `timeout` seconds from its spawn; these were spawned together.
        deadline = min(self._spawned_at[name] for name in names) + timeout
        if not wait_until(all_healthy, deadline - time.monotonic(), 0.1):
            svc = self.services[pending[0]]
            raise StackError(
                f"{svc.name} did not become healthy within {timeout:g} s "
                f"({svc.health_url})\n{_log_tail(svc.log)}"
            )

    def _provision(self) -> None:
        """Create the bucket, the queue and the bucket -> queue notification in moto."""
        endpoint = self.services["moto"].url
        session = boto3.session.Session(
            aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_KEY, region_name=AWS_REGION
        )
        s3 = session.client("s3", endpoint_url=endpoint)
        sqs = session.client("sqs", endpoint_url=endpoint)
        try:
            s3.create_bucket(Bucket=self.bucket)
            queue_url: str = sqs.create_queue(QueueName=self.queue)["QueueUrl"]
            queue_arn: str = sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "bucket-notifications",
                        "Effect": "Allow",
                        "Principal": {"Service": "s3.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": queue_arn,
                        "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{self.bucket}"}},
                    }
                ],
            }
            sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
            s3.put_bucket_notification_configuration(
                Bucket=self.bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [
                        {
                            "Id": "unlearn-ops-deletion-requests",
                            "QueueArn": queue_arn,
                            "Events": ["s3:ObjectCreated:*"],
                            "Filter": {
                                "Key": {"FilterRules": [{"Name": "prefix", "Value": self.prefix}]}
                            },
                        }
                    ]
                },
            )
        except Exception as exc:
            raise StackError(
                f"provisioning bucket {self.bucket!r} and queue {self.queue!r} in moto "
                f"({endpoint}) failed: {exc}\n{_log_tail(self.services['moto'].log)}"
            ) from exc
        finally:
            s3.close()
            sqs.close()
        self.queue_url = queue_url

    def _write_files(self) -> None:
        record = {
            "directory": str(self.directory),
            "bucket": self.bucket,
            "queue": self.queue,
            "queue_url": self.queue_url,
            "prefix": self.prefix,
            "total_startup_seconds": self.total_startup_seconds,
            "env_file": str(self.env_file),
            "services": [svc.to_json() for svc in self.services.values()],
        }
        _write_private(self.directory / STACK_JSON, json.dumps(record, indent=2) + "\n")
        moto = self.services["moto"].url
        lines = [
            "# unlearn-ops stack started by infra/launcher.py; stop: "
            f"python infra/launcher.py down --dir {shlex.quote(str(self.directory))}",
            *(f"export {k}={shlex.quote(v)}" for k, v in self.env().items()),
            "# DVC remote in the same S3 endpoint (optional):",
            f"#   dvc remote add -d stack s3://{self.bucket}/dvc",
            f"#   dvc remote modify stack endpointurl {moto}",
            f"#   dvc remote modify --local stack access_key_id {AWS_KEY}",
            f"#   dvc remote modify --local stack secret_access_key {AWS_KEY}",
        ]
        _write_private(self.env_file, "\n".join(lines) + "\n")

    def _recorded_here(self, path: Path) -> bool:
        """Whether ``path`` (stack.json / stack.env) describes this stack, not a newer one."""
        if not path.exists():
            return False
        record = self.directory / STACK_JSON
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            return True  # unreadable leftovers of a stack that is gone
        recorded = {(s.get("name"), s.get("pgid")) for s in data.get("services", [])}
        ours = {(s.name, s.pgid) for s in self.services.values()}
        return not ours or recorded == ours

    def _stop(self, timeout: float) -> list[Service]:
        """SIGTERM, wait, SIGKILL every group; returns the groups that survived it all."""
        targets = [s for s in reversed(self.services.values()) if _owns_group(s)]
        survivors = set(stop_groups([svc.pgid for svc in targets], timeout))
        for svc in self.services.values():
            if svc.server is not None:
                svc.server.poll()  # collect the exit status so Popen does not warn
        return [svc for svc in targets if svc.pgid in survivors]


# ---------------------------------------------------------------------- helpers


def _tool(name: str) -> list[str]:
    """argv prefix running a console script of this Python's environment."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which(name)
    if found:
        return [found]
    raise StackError(
        f"`{name}` is not installed beside {sys.executable} nor on PATH; "
        "install the project (`make install`) and run the launcher with .venv/bin/python"
    )


def _child_env() -> dict[str, str]:
    """The launcher's environment for a server, minus settings that would point it elsewhere."""
    drop = ("PREFECT_API_URL", "PREFECT_API_KEY", "MLFLOW_TRACKING_URI", "AWS_PROFILE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    no_proxy = ",".join(x for x in (env.get("NO_PROXY", ""), "127.0.0.1,localhost") if x)
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def _s3_env(endpoint: str) -> dict[str, str]:
    """The AWS variables that point boto3 at moto on ``endpoint``, with moto's test keys."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": AWS_KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_KEY,
        "AWS_DEFAULT_REGION": AWS_REGION,
    }


def _choose_ports(fixed: Mapping[str, int]) -> dict[str, int]:
    """Ports by service: the fixed ones as given, the others free on 127.0.0.1 now."""
    chosen = {name: int(port) for name, port in fixed.items()}
    taken = set(chosen.values())
    for name in SERVICE_NAMES:
        if name in chosen:
            continue
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in taken and port not in _RESERVED_PORTS:
                break
        chosen[name] = port
        taken.add(port)
    return chosen


def _start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot; None where unknown.

    stack.json has always recorded field 22 of proc(5); the same number from psutil keeps
    records written by earlier launchers comparable.
    """
    started = process_started_at(pid)
    if started is None:
        return None
    return round((started - float(psutil.boot_time())) * os.sysconf("SC_CLK_TCK"))


def _owns_group(svc: Service) -> bool:
    """Whether the recorded process group still exists and is still the one we started."""
    if svc.server is not None:
        svc.server.poll()  # collect the leader's exit status first (Popen keeps it)
    if not group_alive(svc.pgid):
        return False
    ticks = _start_ticks(svc.pid)
    # Leader gone but group alive: the pgid cannot have been reused, it is ours.
    return ticks is None or svc.start_ticks is None or ticks == svc.start_ticks


def _log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {log}: {exc})"
    tail = text.rstrip().splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {log} ---\n" + "\n".join(tail)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (it may hold secrets)."""
    write_atomic(path, text, mode=0o600)


def _load_or_create_secrets(path: Path) -> dict[str, str]:
    """The stack directory's secrets: generated on its first start, then kept.

    The id hash key must not change under a workspace (its ledgers hold keyed hashes), so
    a later ``up`` in the same directory reuses the keys; delete the file for new ones.
    """
    try:
        data = json.loads(path.read_text())
        if all(isinstance(data.get(k), str) and data[k] for k in SECRET_NAMES):
            return {k: str(data[k]) for k in SECRET_NAMES}
    except (OSError, ValueError, AttributeError):
        pass
    generated = {k: secrets.token_hex(32) for k in SECRET_NAMES}
    _write_private(path, json.dumps(generated, indent=2) + "\n")
    return generated


def _read_secrets(env_file: Path) -> dict[str, str]:
    """The generated secrets from a stack.env (empty if the file is gone)."""
    if not env_file.is_file():
        return {}
    values = dotenv_values(env_file)  # reads the `export KEY=value` lines as a shell would
    return {key: values[key] or "" for key in SECRET_NAMES if key in values}


# ---------------------------------------------------------------------- CLI


def _cmd_up(args: argparse.Namespace) -> int:
    stack = Stack.up(
        args.dir,
        bucket=args.bucket,
        queue=args.queue,
        prefix=args.prefix,
        timeout=args.timeout,
    )
    print(f"stack up in {stack.directory}")
    for name, svc in stack.services.items():
        print(f"  {name:<8} {svc.url:<24} started in {svc.startup_seconds:6.2f} s  (log {svc.log})")
    print(f"  {'total':<8} {'':<24} started in {stack.total_startup_seconds:6.2f} s")
    print(f"settings: source {stack.env_file}")
    print(f"stop:     {Path(sys.argv[0]).as_posix()} down --dir {args.dir}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    try:
        stack = Stack.load(args.dir)
    except StackError as exc:
        print(f"nothing to stop: {exc}")
        return 0
    stack.down(timeout=args.timeout)
    print(f"stack in {stack.directory} stopped")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    stack = Stack.load(args.dir)
    health = stack.health()
    for name, svc in stack.services.items():
        state = (
            "healthy" if health[name] else ("running, unhealthy" if _owns_group(svc) else "down")
        )
        print(f"{name:<8} {svc.url:<24} pid {svc.pid:<8} {state}")
    return 0 if all(health.values()) else 1


def _cmd_env(args: argparse.Namespace) -> int:
    stack = Stack.load(args.dir)
    print(stack.env_file.read_text(), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``up``, ``down``, ``status``, ``env``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="launcher.py", description="Start or stop the unlearn-ops stack without Docker."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {
        "up": ("start moto, MLflow and Prefect; write stack.json and stack.env", _cmd_up),
        "down": ("stop the stack recorded in DIR", _cmd_down),
        "status": ("health of each service (exit 1 unless all are healthy)", _cmd_status),
        "env": ("print stack.env (export lines)", _cmd_env),
    }
    for name, (help_text, func) in commands.items():
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--dir", default=".stack", help="stack directory (default .stack)")
        cmd.set_defaults(func=func)
        if name == "up":
            cmd.add_argument("--bucket", default=DEFAULT_BUCKET)
            cmd.add_argument("--queue", default=DEFAULT_QUEUE)
            cmd.add_argument("--prefix", default=DEFAULT_PREFIX)
            cmd.add_argument(
                "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per service"
            )
        elif name == "down":
            cmd.add_argument("--timeout", type=float, default=15.0, help="seconds before SIGKILL")
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted (services started so far were stopped)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

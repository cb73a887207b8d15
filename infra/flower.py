#!/usr/bin/env python3
"""Start a local Flower deployment on 127.0.0.1: one SuperLink and a SuperNode per site.

Each server is its own process in its own process group (the package's server-process
helper, :mod:`unlearn_ops.adapters.process`), its log under ``DIR/logs``; a throwaway
``FLWR_HOME`` (``DIR/flwr-home``) holds the connection in ``config.toml``. Each SuperLink
and SuperNode starts a ``flower-superexec`` child, each run a ``flwr-serverapp`` and each
message a ``flwr-clientapp``: stopping a group stops them all, and :meth:`stop` verifies
that nothing is left.

Usage (sites: a JSON list of ``{"partition_id", "client_id", "data_path"}``)::

    python infra/flower.py up --dir .flower --sites sites.json   # until Ctrl-C

This file is not part of the installed package (tests load it by path); it runs in the
project's environment and starts the Flower executables of ``.venv-flower`` (``make
flower``), found as ``--flower-bin`` or ``UNLEARN_OPS_FLOWER_BIN``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from unlearn_ops.adapters.flower.cli import FlowerCli
from unlearn_ops.adapters.process import ServerProcess, group_alive, stop_groups
from unlearn_ops.errors import FederationError
from unlearn_ops.waiting import wait_until

__all__ = ["FLOWER_BIN_ENV", "FlowerDeployment", "Site", "default_flower_bin", "main"]

HOST = "127.0.0.1"
FLOWER_BIN_ENV = "UNLEARN_OPS_FLOWER_BIN"
REPO = Path(__file__).resolve().parent.parent


def default_flower_bin() -> Path:
    """`UNLEARN_OPS_FLOWER_BIN`, else the repository's `.venv-flower/bin`."""
    return Path(os.environ.get(FLOWER_BIN_ENV) or REPO / ".venv-flower" / "bin")


@dataclass(frozen=True)
class Site:
    """One member of the federation: its partition, its client id, its local table."""

    partition_id: int
    client_id: str
    data_path: Path

    def node_config(self, num_partitions: int) -> str:
        """The SuperNode's `--node-config` (TOML values: strings quoted)."""
        return (
            f"partition-id={self.partition_id} num-partitions={num_partitions} "
            f'client-id="{self.client_id}" data-path="{self.data_path}"'
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class FlowerDeployment:
    """A SuperLink and one SuperNode per site, on loopback. Construction starts nothing.

    Args:
        directory: where the logs and the throwaway `FLWR_HOME` go.
        sites: the federation's members.
        bin_dir: the Flower environment's `bin` folder.
    """

    directory: Path
    sites: Sequence[Site]
    bin_dir: Path = field(default_factory=default_flower_bin)
    port: int = 0
    startup_seconds: dict[str, float] = field(default_factory=dict)
    servers: list[ServerProcess] = field(default_factory=list, repr=False)

    @property
    def address(self) -> str:
        """The SuperLink's address (Fleet, Control and ServerAppIo on one port)."""
        return f"{HOST}:{self.port}"

    @property
    def cli(self) -> FlowerCli:
        """`flwr` against this deployment."""
        return FlowerCli(self.bin_dir, self.directory / "flwr-home")

    def start(self, timeout: float = 120.0) -> None:
        """Start the SuperLink, wait for its health, start the SuperNodes, wait for them.

        Raises:
            FederationError: a process exited, or was not ready within `timeout` (all
                that was started is stopped again).
        """
        if not (self.bin_dir / "flower-superlink").exists():
            raise FederationError(
                "start the deployment",
                f"no flower-superlink in {self.bin_dir}",
                f"run `make flower`, or set {FLOWER_BIN_ENV}",
            )
        logs = self.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.port = self.port or _free_port()
        cli = self.cli
        cli.write_connection(self.address)
        began = time.monotonic()
        try:
            self._start_superlink(cli, logs, timeout)
            self.startup_seconds["superlink_healthy"] = time.monotonic() - began
            self._start_supernodes(cli, logs)
            if not wait_until(lambda: cli.online_nodes() >= len(self.sites), timeout, 0.5):
                raise FederationError(
                    "start the SuperNodes",
                    f"{cli.online_nodes()} of {len(self.sites)} online after {timeout:.0f} s",
                    f"see {logs}",
                )
            self.startup_seconds["nodes_registered"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise

    def _start_superlink(self, cli: FlowerCli, logs: Path, timeout: float) -> None:
        argv = [
            str(self.bin_dir / "flower-superlink"),
            "--insecure",
            "--host",
            HOST,
            "--port",
            str(self.port),
            # Else it runs `uv sync` against the package index for every app.
            "--disable-runtime-dependency-installation",
        ]
        server = ServerProcess(
            argv,
            health_url=f"http://{self.address}/health",
            log_path=logs / "superlink.log",
            env=cli.env,
            cwd=self.directory,
        )
        server.start()
        self.servers.append(server)
        outcome = server.wait_healthy(timeout)
        if outcome != "healthy":
            raise FederationError("start the SuperLink", f"{outcome}: {server.log_tail(800)}")

    def _start_supernodes(self, cli: FlowerCli, logs: Path) -> None:
        for site in self.sites:
            port = _free_port()
            argv = [
                str(self.bin_dir / "flower-supernode"),
                "--insecure",
                "--superlink",
                self.address,
                "--host",
                HOST,
                "--port",
                str(port),
                "--node-config",
                site.node_config(len(self.sites)),
            ]
            server = ServerProcess(
                argv,
                health_url=f"http://{HOST}:{port}/health",
                log_path=logs / f"supernode-{site.partition_id:03d}.log",
                env=cli.env,
                cwd=self.directory,
            )
            server.start()
            self.servers.append(server)

    def alive(self) -> list[int]:
        """Process groups of this deployment that still have a running process."""
        return [s.pid for s in self.servers if s.process is not None and group_alive(s.pid)]

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every group (SIGTERM, then SIGKILL) and check that none is left.

        Raises:
            FederationError: a process survived SIGKILL.
        """
        started = [s for s in self.servers if s.process is not None]
        survivors = stop_groups([s.pid for s in started], timeout)
        for server in started:
            server.stop(timeout=1.0)  # collects the leader's exit status
        if survivors:
            raise FederationError("stop the deployment", f"groups {survivors} still run")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """`up --dir DIR --sites FILE`: start, print the address and times, stop on a signal."""
    parser = argparse.ArgumentParser(prog="infra/flower.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a SuperLink and the sites' SuperNodes")
    up.add_argument("--dir", type=Path, required=True)
    up.add_argument("--sites", type=Path, required=True)
    up.add_argument("--flower-bin", type=Path, default=None)
    args = parser.parse_args(argv)
    sites = [
        Site(int(s["partition_id"]), str(s["client_id"]), Path(s["data_path"]).resolve())
        for s in json.loads(args.sites.read_text(encoding="utf-8"))
    ]
    deployment = FlowerDeployment(
        args.dir.resolve(), sites, bin_dir=args.flower_bin or default_flower_bin()
    )
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    try:
        deployment.start()
        print(f"superlink {deployment.address}; FLWR_HOME={deployment.cli.home}")
        print(json.dumps({k: round(v, 2) for k, v in deployment.startup_seconds.items()}))
        sys.stdout.flush()
        wait_until(lambda: bool(stopping), float("inf"), 0.5)
    except KeyboardInterrupt:
        pass
    except FederationError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        deployment.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

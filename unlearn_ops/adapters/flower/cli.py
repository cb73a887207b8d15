"""The `flwr` command line of the federation's environment, as a small typed client.

flwr 1.42 cannot be imported beside Prefect (it pins fastapi below it), so unlearn-ops never
imports it: it runs the `flwr` executable of `.venv-flower` (`make flower`) as a
subprocess, with a throwaway `FLWR_HOME` whose `config.toml` names the SuperLink.
`flwr run` exits 0 even when the run fails, so :meth:`FlowerCli.run_app` reads the run's
status back (`flwr list --run-id ... --format json`) and raises unless it finished.

Example::

    cli = FlowerCli(Path(".venv-flower/bin"), home=Path("/tmp/flwr-home"))
    cli.write_connection("127.0.0.1:9093")
    cli.run_app(Path("federation"), {"plan": "/abs/plan.json"}, log_path=Path("run.log"))
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn_ops.errors import FederationError

__all__ = ["CONNECTION", "FlowerAppRunner", "FlowerCli", "FlowerRun", "flower_env"]

CONNECTION = "local"
# Without these a SuperLink or SuperNode phones home or checks for updates (FEDERATED.md);
# the poll interval's default (3 s) dominates a short deployment's rounds.
QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
}


def flower_env(home: Path, bin_dir: Path) -> dict[str, str]:
    """The environment of every Flower process: its home, quiet, its venv first on PATH.

    PATH matters: a SuperNode starts `flower-superexec` and `flwr-clientapp` by name.
    """
    env = dict(os.environ)
    env.update(QUIET_ENV)
    env["FLWR_HOME"] = str(home)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    return env


@dataclass(frozen=True)
class FlowerRun:
    """A finished run: its id, status (`finished:completed` when it succeeded) and log."""

    run_id: int
    status: str
    log: str


class FlowerCli:
    """The `flwr` executable of a Flower environment, against one SuperLink.

    Args:
        bin_dir: the `bin` folder of the Flower environment (`.venv-flower/bin`).
        home: the `FLWR_HOME` to use (holds `config.toml`).
    """

    def __init__(self, bin_dir: Path, home: Path) -> None:
        self.bin_dir = bin_dir
        self.home = home

    @property
    def env(self) -> dict[str, str]:
        """The environment `flwr` runs in."""
        return flower_env(self.home, self.bin_dir)

    def write_connection(self, address: str) -> None:
        """Name the SuperLink at `address` as the default connection (insecure, loopback)."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "{address}"\ninsecure = true\n',
            encoding="utf-8",
        )

    def _flwr(self, *args: str, timeout: float, cwd: Path | None = None) -> str:
        argv = [str(self.bin_dir / "flwr"), *args]
        if not (self.bin_dir / "flwr").exists():
            raise FederationError(
                f"flwr {args[0]}",
                f"no Flower environment at {self.bin_dir}",
                "run `make flower` in the unlearn-ops checkout, or point UNLEARN_OPS_FLOWER_BIN "
                "(--flower-bin) at the bin folder of one",
            )
        try:
            done = subprocess.run(  # noqa: S603 (our own argv, no shell)
                argv,
                capture_output=True,
                text=True,
                env=self.env,
                cwd=cwd,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FederationError(f"flwr {args[0]}", str(exc)) from exc
        if done.returncode != 0:
            raise FederationError(
                f"flwr {args[0]}", f"exit {done.returncode}: {(done.stderr or done.stdout)[-800:]}"
            )
        return done.stdout

    def _json(self, *args: str, timeout: float) -> dict[str, Any]:
        text = self._flwr(*args, "--format", "json", timeout=timeout)
        try:
            value: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FederationError(f"flwr {args[0]}", f"no JSON: {text[-300:]}") from exc
        return value

    def online_nodes(self, timeout: float = 30.0) -> int:
        """How many SuperNodes the SuperLink has online now."""
        answer = self._json("supernode", "list", CONNECTION, timeout=timeout)
        nodes = answer.get("nodes", [])
        return sum(1 for node in nodes if str(node.get("status", "")).lower() == "online")

    def run_app(
        self,
        app_dir: Path,
        run_config: Mapping[str, str],
        *,
        log_path: Path,
        timeout: float = 600.0,
    ) -> FlowerRun:
        """Run the Flower App at `app_dir` to its end, streaming its log to `log_path`.

        Raises:
            FederationError: `flwr run` failed, or the run ended other than completed.
        """
        override = " ".join(f'{key}="{value}"' for key, value in run_config.items())
        argv = ["run", str(app_dir), CONNECTION, "--run-config", override, "--stream"]
        log = self._flwr(*argv, timeout=timeout)
        log_path.write_text(log, encoding="utf-8")
        runs = self._json("list", CONNECTION, timeout=60).get("runs", [])
        if not runs:
            raise FederationError("flwr run", f"the SuperLink lists no run; log: {log[-800:]}")
        last = max(runs, key=lambda run: int(run["run-id"]))
        status = str(last.get("status", ""))
        if status != "finished:completed":
            raise FederationError(
                "flwr run", f"run {last['run-id']} ended {status!r}; its log ends: {log[-800:]}"
            )
        return FlowerRun(int(last["run-id"]), status, log)


class FlowerAppRunner:
    """Runs the repository's Flower App (`federation/`) on a plan, through a SuperLink.

    Implements :class:`unlearn_ops.workflow.federated.FederationRunner`.

    Args:
        cli: `flwr` of the Flower environment, connected to the SuperLink.
        app_dir: the Flower App (the repository's `federation/`).
        timeout: seconds a run may take.
    """

    def __init__(self, cli: FlowerCli, app_dir: Path, timeout: float = 900.0) -> None:
        self.cli = cli
        self.app_dir = app_dir
        self.timeout = timeout

    def run_plan(self, plan_path: Path, log_path: Path) -> None:
        """`flwr run` the app with `plan=<plan_path>`; raise unless the run completed."""
        self.cli.run_app(
            self.app_dir, {"plan": str(plan_path)}, log_path=log_path, timeout=self.timeout
        )

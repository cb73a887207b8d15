"""The workspace's warm runner (issue 15): flow commands run in a child of a warm process.

The pure parts (which commands go, what a runner must share with a command) are tested
directly; the rest through the real thing: `unlearn-ops` commands as new processes on a
digits workspace, with the workspace's real Prefect server and a real runner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearn_ops.adapters.process import process_started_at
from unlearn_ops.cli import warm
from unlearn_ops.cli.app import _workspace_option

EXECUTABLE = Path(sys.executable).parent / "unlearn-ops"


def test_a_command_line_names_its_workspace_only_when_it_parses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNLEARN_OPS_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert _workspace_option(["forget", "--ids", "7", "-w", "a"]) == str(tmp_path / "a")
    assert _workspace_option(["train", "--workspace=b/c"]) == str(tmp_path / "b" / "c")
    assert _workspace_option(["rollback", "--to", "3"]) == str(tmp_path)
    assert _workspace_option(["forget", "--no-such-option"]) is None
    assert _workspace_option(["forget", "--ids"]) is None  # an option without its value
    assert _workspace_option(["train", "extra"]) is None
    assert _workspace_option(["no-such-command"]) is None
    assert _workspace_option([]) is None
    monkeypatch.setenv("UNLEARN_OPS_WORKSPACE", "from/env")
    assert _workspace_option(["forget", "--ids", "7"]) == str(tmp_path / "from" / "env")
    assert {"train", "forget", "rollback", "retrain-exact"} == warm.COMMANDS


def test_the_stamp_follows_settings_not_shell_noise() -> None:
    base = {"HOME": "/home/x", "UNLEARN_OPS_SHARDS_IN_PARALLEL": "2"}
    assert warm.stamp(base) == warm.stamp({**base, "PWD": "/elsewhere", "TERM": "xterm", "_": "a"})
    assert warm.stamp(base) != warm.stamp({**base, "UNLEARN_OPS_SHARDS_IN_PARALLEL": "1"})
    assert warm.stamp(base) != warm.stamp({**base, "PREFECT_API_URL": "http://127.0.0.1:1/api"})


def test_commands_stay_here_when_they_do_not_run_flows_or_the_runner_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no workspace here: nothing may be started for it
    monkeypatch.delenv("UNLEARN_OPS_WORKSPACE", raising=False)
    assert warm.delegate(["versions"], _workspace_option) is None
    assert warm.delegate(["forget", "--help"], _workspace_option) is None
    monkeypatch.setenv("UNLEARN_OPS_WARM_RUNNER", "false")
    assert warm.delegate(["forget", "--ids", "1"], _workspace_option) is None
    monkeypatch.setenv("UNLEARN_OPS_WARM_RUNNER", "true")
    # no workspace: the command says so
    assert warm.delegate(["forget", "--ids", "1"], _workspace_option) is None
    assert not list(tmp_path.iterdir())


def test_a_mistyped_command_starts_no_runner_in_a_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "params.yaml").write_text("{}\n", encoding="utf-8")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("UNLEARN_OPS_WORKSPACE", raising=False)
    monkeypatch.setenv("UNLEARN_OPS_WARM_RUNNER", "true")
    monkeypatch.delitem(sys.modules, "prefect", raising=False)  # as in a command's process
    try:
        assert warm.delegate(["forget", "--no-such-option"], _workspace_option) is None
        assert warm.delegate(["train", "--workspace"], _workspace_option) is None
        assert sorted(path.name for path in tmp_path.iterdir()) == ["dvc.yaml", "params.yaml"]
    finally:
        warm.stop_runner(tmp_path)  # should the assertions fail, leave no runner behind


def _cli(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXECUTABLE), *argv], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )


def _log_lines(root: Path) -> list[str]:
    return (root / ".unlearn-ops" / "warm-runner.log").read_text(encoding="utf-8").splitlines()


@pytest.mark.servers
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_runner_serves_the_workspace_commands_as_new_processes_would(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")},
        "UNLEARN_OPS_PREFECT_SERVER": "local",
        "UNLEARN_OPS_WARM_RUNNER": "true",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "UNLEARN_OPS_TORCH_THREADS": "1",
    }
    cold = {**env, "UNLEARN_OPS_WARM_RUNNER": "false"}
    initialised = _cli(["init", str(root), "--shards", "2", "--slices", "2"], env, tmp_path)
    assert initialised.returncode == 0, initialised.stderr
    try:
        trained = _cli(["train", "--json", "--no-progress"], env, root)
        assert trained.returncode == 0, trained.stderr[-2000:]
        runner = warm.running_runner(root)
        assert runner is not None
        assert json.loads(trained.stdout)["version"] == "1"

        forgot = _cli(["forget", "--ids", "5", "--json", "--no-progress"], env, root)
        assert forgot.returncode == 0, forgot.stderr[-2000:]
        assert json.loads(forgot.stdout)["version"] == "2"
        assert warm.running_runner(root) == runner  # the same runner served both
        assert [line.split(": ", 1)[1] for line in _log_lines(root) if ": " in line][-2:] == [
            f"train --json --no-progress (in {root})",
            f"forget --ids 5 --json --no-progress (in {root})",
        ]

        # Errors are the command's own: one line, the same status as in its own process.
        refused = _cli(["forget", "--ids", "no-such-id", "--no-progress"], env, root)
        alone = _cli(["forget", "--ids", "no-such-id", "--no-progress"], cold, root)
        assert (refused.returncode, refused.stderr) == (alone.returncode, alone.stderr)
        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1
        usage = _cli(["forget", "--bogus"], env, root)
        assert usage.stderr == "error: No such option: --bogus. See 'unlearn-ops forget --help'.\n"

        # Ctrl-C reaches the command; it stops as it would in its own process.
        before = len(_log_lines(root))
        interrupted = subprocess.Popen(
            [str(EXECUTABLE), "forget", "--ids", "17", "--no-progress"],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while len(_log_lines(root)) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        interrupted.send_signal(signal.SIGINT)
        _, stderr = interrupted.communicate(timeout=120)
        assert interrupted.returncode == 130, stderr[-2000:]

        # Another environment: the runner is replaced, not reused with the wrong settings.
        other = _cli(["forget", "--ids", "no-such-id"], {**env, "UNLEARN_OPS_X": "1"}, root)
        assert other.returncode == 2
        replacement = warm.running_runner(root)
        assert replacement is not None
        assert replacement.pid != runner.pid
        assert process_started_at(runner.pid) is None or not runner.alive()

        # What the runner trained and forgot is exact: the certificate holds.
        verified = _cli(["verify", "--json"], env, root)
        assert verified.returncode == 0, verified.stderr[-2000:]
    finally:
        stopped = _cli(["server", "stop", "--json"], env, root)
    assert json.loads(stopped.stdout)["warm_runner_stopped"] is True
    assert warm.running_runner(root) is None
    assert not Path(runner.socket).exists()  # a stopped runner leaves no socket behind
    assert _log_lines(root)[-1].endswith("exits (stopped)")

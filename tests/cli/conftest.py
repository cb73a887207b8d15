"""Fixtures of the CLI tests: the installed `unlearn-ops` console script, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The script that `pip install` made beside this interpreter; this checkout goes first on
# the path, so the script runs the code under test.
CONSOLE_SCRIPT = Path(sys.executable).parent / "unlearn-ops"
REPOSITORY = Path(__file__).resolve().parents[2]

Console = Callable[..., "subprocess.CompletedProcess[str]"]


def run_console(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`unlearn-ops ARGV` in a new process in `cwd`; returns the finished process."""
    assert CONSOLE_SCRIPT.is_file(), f"no console script at {CONSOLE_SCRIPT}: pip install -e ."
    path = os.pathsep.join(p for p in (str(REPOSITORY), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {}), "PYTHONPATH": path},
        timeout=300,
        check=False,
    )


@pytest.fixture
def console() -> Console:
    """`console(argv, cwd=DIR, env=None)`: the console script run in DIR (see `run_console`)."""
    return run_console

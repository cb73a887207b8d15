"""Usage errors (a mistyped option or command, a missing argument): one line, exit code 2.

Through the installed console script in a subprocess (issue 11, finding 6: typer 0.29
carries its own click, and `main` let its errors out as a 38-line traceback with exit 1;
the in-process tests never went through the script).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import CliRunner

    from tests.cli.conftest import Console

USAGE_ERRORS = [
    (["init", "x", "--bogus"], "error: No such option: --bogus. See 'unlearn-ops init --help'."),
    (
        ["forget", "--idz", "3"],
        "error: No such option: --idz (Possible options: --ids). See 'unlearn-ops forget --help'.",
    ),
    (["bogus"], "error: No such command 'bogus'. See 'unlearn-ops --help'."),
    (
        ["forgt", "--ids", "3"],
        "error: No such command 'forgt'. Did you mean 'forget'? See 'unlearn-ops --help'.",
    ),
    (["init"], "error: Missing argument 'directory'. See 'unlearn-ops init --help'."),
    (
        ["init", "x", "--shards", "0"],
        "error: Invalid value for '--shards': Input should be greater than or equal to 1. "
        "See 'unlearn-ops init --help'.",
    ),
    (["train", "--workspace"], "error: Option '--workspace' requires an argument."),
]


@pytest.mark.parametrize(("argv", "line"), USAGE_ERRORS)
def test_a_usage_error_is_one_line_and_exit_2(
    argv: list[str], line: str, tmp_path: Path, console: Console
) -> None:
    result = console(argv, cwd=tmp_path)
    assert (result.returncode, result.stderr, result.stdout) == (2, line + "\n", "")
    assert list(tmp_path.iterdir()) == []  # `init x` created nothing


@pytest.mark.parametrize(("argv", "line"), USAGE_ERRORS)
def test_a_usage_error_in_process_is_the_same_line(
    argv: list[str], line: str, cli: CliRunner
) -> None:
    code, out, err = cli(argv)
    # In process the program is named after pytest's argv; the rest of the line is the same.
    assert (code, out, err.count("\n")) == (2, "", 1)
    assert err.rstrip("\n").split(" See '")[0] == line.split(" See '")[0]


def test_no_command_prints_the_help(tmp_path: Path, console: Console) -> None:
    result = console([], cwd=tmp_path)
    assert result.returncode == 2
    assert "Usage: unlearn-ops [OPTIONS] COMMAND" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_help_of_a_command_exits_0(tmp_path: Path, console: Console) -> None:
    result = console(["forget", "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--ids-file" in result.stdout


def test_a_library_error_through_the_script_is_one_line(tmp_path: Path, console: Console) -> None:
    result = console(["versions", "-w", "nowhere"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: no workspace")
    assert str(tmp_path / "nowhere") in result.stderr

"""The receipt command's refusals: one line each, nothing written (the flow is in pipelines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import CliRunner


@pytest.fixture
def workspace(tmp_path: Path, cli: CliRunner) -> Path:
    code, _, err = cli(["init", str(tmp_path / "ws"), "--shards", "2", "--slices", "2"])
    assert code == 0, err
    return tmp_path / "ws"


def test_receipt_needs_a_request_or_a_file(cli: CliRunner, workspace: Path) -> None:
    for argv in ([], ["r1", "--verify", "x.json"]):
        code, out, err = cli(["receipt", *argv, "-w", str(workspace)])
        assert (code, out) == (2, "")
        assert (
            err
            == "error: give a REQUEST_ID to issue a receipt for, or --verify FILE to check one\n"
        )


def test_no_receipt_key_is_one_error(
    cli: CliRunner, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNLEARN_OPS_RECEIPT_SIGNING_KEY", raising=False)
    output = tmp_path / "r.json"
    code, out, err = cli(["receipt", "r1", "-o", str(output), "-w", str(workspace)])
    assert (code, out) == (2, "")
    assert err == (
        "error: receipt for r1: no receipt key is configured; set "
        "UNLEARN_OPS_RECEIPT_SIGNING_KEY (a secret kept apart from the request keys)\n"
    )
    assert not output.exists()


def test_an_output_that_cannot_be_a_file_is_one_error_before_anything_is_made(
    cli: CliRunner, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_RECEIPT_SIGNING_KEY", "receipt-key-cli-test")
    (tmp_path / "plain-file").write_text("x")
    for output, problem in (
        (tmp_path, " is a folder: name a file in it"),
        (tmp_path / "plain-file" / "r.json", ": cannot make its folder (File exists)"),
    ):
        code, out, err = cli(["receipt", "r1", "-o", str(output), "-w", str(workspace)])
        assert (code, out) == (2, "")
        assert err == f"error: --output {output}{problem}\n"  # not the unknown request
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain-file", "ws"]


def test_an_unknown_request_is_one_error(
    cli: CliRunner, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_RECEIPT_SIGNING_KEY", "receipt-key-cli-test")
    code, _, err = cli(["receipt", "r1", "-w", str(workspace)])
    assert code == 2
    assert err.startswith("error: request 'r1' is not in the ledger")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "it is not JSON"),
        ("[1, 2]", "it is not a receipt (not a JSON object)"),
        (json.dumps({"version": 1}), "it is not a receipt (no receipt.request_id)"),
    ],
)
def test_a_file_that_is_not_a_receipt_is_one_error(
    cli: CliRunner,
    workspace: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: str,
    problem: str,
) -> None:
    monkeypatch.setenv("UNLEARN_OPS_RECEIPT_SIGNING_KEY", "receipt-key-cli-test")
    path = tmp_path / "receipt.json"
    path.write_text(content)
    code, _, err = cli(["receipt", "--verify", str(path), "-w", str(workspace)])
    assert code == 2
    assert problem in err
    assert len(err.splitlines()) == 1

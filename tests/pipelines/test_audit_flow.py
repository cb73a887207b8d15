"""Audit and report of real requests: flows on a tiny workspace, MLflow on sqlite, git + DVC."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from pipelines.forget import forget_records
from pipelines.train import train_ensemble
from tests.pipelines.conftest import make_workspace
from unlearn_ops.compliance.audit import audit_request, parse_time
from unlearn_ops.workflow.workspace import Workspace

if TYPE_CHECKING:
    from tests.conftest import CliRunner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A workspace trained, then forgotten by `req-audit`; `req-noop` asks for one of its ids."""
    root = make_workspace(tmp_path_factory.mktemp("audit") / "ws")
    train_ensemble(str(root))
    table = pd.read_parquet(root / "data" / "shards" / "shard-001.parquet")
    forgotten = [str(r) for r in table["record_id"][:2]]
    forget_records(str(root), [{"request_id": "req-audit", "record_ids": forgotten}])
    forget_records(str(root), [{"request_id": "req-noop", "record_ids": forgotten[:1]}])
    return root, forgotten


def test_audit_agrees_with_registry_ledger_and_git(
    served: tuple[Path, list[str]], cli: CliRunner
) -> None:
    root, forgotten = served
    code, out, err = cli(["audit", "req-audit", "--certify", "--json", "-w", str(root)])
    assert code == 0, err
    data = json.loads(out)
    ws = Workspace.open(root)
    registry = ws.registry()
    state = ws.ledger.request("req-audit")
    assert state is not None
    assert state.applied
    assert state.served
    first = registry.first_honouring("req-audit")
    assert first is not None
    assert first.version == "2"

    assert data["state"] == "served"
    assert data["received"]["record_count"] == 2
    assert data["verified"] == {"validated": True, "signature": None}
    applied = data["applied"]
    assert applied["data_revision"] == state.applied["git_sha"] == first.tag("git_sha")
    parent = subprocess.run(
        ["git", "-C", str(root), "rev-parse", f"{applied['data_revision']}^"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert applied["parent_revision"] == parent
    assert applied["data_md5"] == first.tag("data_md5")
    assert applied["shards_retrained"] == json.loads(first.tag("first_stages"))
    assert list(applied["shards_retrained"]) == ["1"]
    honoured = data["honoured"]
    assert honoured["first_version"] == honoured["served_version"] == "2"
    assert parse_time(honoured["champion_since"]) == parse_time(state.served["at"])
    assert honoured["gates_passed"] is True
    assert {g["gate"] for g in honoured["gates"]} == set(json.loads(first.tag("gates")))
    assert data["exactness"] == {"run": True, "passed": True, "version": "2"}
    assert data["champion"] == {"version": registry.alias_version("champion"), "honours": True}
    since = parse_time(honoured["champion_since"])
    assert since is not None
    assert data["purge"]["purged"] is False
    retention = timedelta(days=ws.params.compliance.retention_days)
    assert parse_time(data["purge"]["retention_until"]) == since + retention
    assert data["deadline"]["status"] == "met"
    assert data["ledger"] == {"intact": True, "problems": []}
    # Counts and hashes only: no forgotten id appears as a value anywhere.
    assert not set(forgotten) & set(re.findall(r'"([^"]*)"', out))


def test_audit_lines_and_a_noop_request(served: tuple[Path, list[str]], cli: CliRunner) -> None:
    root, _ = served
    code, out, err = cli(["audit", "req-noop", "-w", str(root)])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "request req-noop: served"
    assert any(line.startswith("received: ") and "1 record(s)" in line for line in lines)
    assert "applied: no data change of its own (its records were forgotten before)" in lines
    assert any(line.startswith("honoured: first by version 2 ") for line in lines)
    assert "exactness: not run (pass --certify)" in lines
    assert "champion: version 2 honours the request" in lines
    assert any(line.startswith("purge: not purged yet (retention until ") for line in lines)
    audit = audit_request(Workspace.open(root), "req-noop")
    assert (audit.noop, audit.deadline_status) == (True, "met")


def test_unknown_request_is_one_line(served: tuple[Path, list[str]], cli: CliRunner) -> None:
    code, out, err = cli(["audit", "req-nope", "-w", str(served[0])])
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("error: request 'req-nope' is not in the ledger ")
    assert "req-audit, req-noop" in err
    code, _, err = cli(["audit", "-w", str(served[0])])
    assert code == 2
    assert "--check-chain" in err


def test_check_chain_names_an_edited_line(
    served: tuple[Path, list[str]], tmp_path: Path, cli: CliRunner
) -> None:
    root, _ = served
    entries = len((root / "ledger.jsonl").read_text().splitlines())
    code, out, _ = cli(["audit", "--check-chain", "-w", str(root)])
    assert (code, out) == (0, f"ledger intact: {entries} entries\n")

    copy = tmp_path / "ws"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("mlartifacts", "checkpoints"))
    lines = (copy / "ledger.jsonl").read_text().splitlines()
    edited = json.loads(lines[1])
    edited["data"]["git_sha"] = "0" * 40  # a valid entry, with its old hash
    lines[1] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    (copy / "ledger.jsonl").write_text("\n".join(lines) + "\n")
    code, out, _ = cli(["audit", "--check-chain", "-w", str(copy)])
    assert code == 1
    assert out.splitlines() == [
        "ledger.jsonl line 2: its content does not match its hash",
        "ledger.jsonl line 3: does not chain to the line before it",
        f"ledger BROKEN: 2 problem(s) in {entries} entries",
    ]


def test_report_html_and_markdown(
    served: tuple[Path, list[str]], tmp_path: Path, cli: CliRunner
) -> None:
    root, _ = served
    output = tmp_path / "report.html"
    code, out, err = cli(["report", "-w", str(root), "--output", str(output)])
    assert code == 0, err
    assert out.startswith(f"wrote {output}: 2 request(s) (2 met, 0 missed, 0 pending")
    page = output.read_text()
    for request_id in ("req-audit", "req-noop"):
        assert f"<td>{request_id}</td>" in page
    match = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match is not None
    assert base64.b64decode(match.group(1)).startswith(b"\x89PNG")
    assert "ledger intact" in page

    markdown = tmp_path / "md" / "report.md"
    code, out, err = cli(
        ["report", "-w", str(root), "-o", str(markdown), "--since", "2000-01-01", "--json"]
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["files"] == [str(markdown), str(tmp_path / "md" / "report-timeline.png")]
    assert [r["request_id"] for r in data["requests"]] == ["req-audit", "req-noop"]
    assert [v["version"] for v in data["versions"]] == ["1", "2"]
    assert "| req-audit |" in markdown.read_text()

    code, out, _ = cli(
        ["report", "-w", str(root), "-o", str(tmp_path / "none.html"), "--since", "2999-01-01"]
    )
    assert code == 0
    assert "0 request(s)" in out
    code, _, err = cli(["report", "-w", str(root), "--until", "soon"])
    assert code == 2
    assert "--until: 'soon' is not a date" in err

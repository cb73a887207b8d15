"""The request ledger: states folded from appended entries, and a hash chain that shows edits.

Real files in tmp_path; hypothesis picks which line and which field to tamper with.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unlearn_ops.deletion.ledger import GENESIS, Ledger, RequestState
from unlearn_ops.errors import StoreError

FIELDS = ("seq", "event", "request_id", "at", "previous", "data")
EVENTS = ("received", "applied", "served", "failed")
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8)
REPLACEMENTS: dict[str, st.SearchStrategy[Any]] = {
    "seq": st.integers(-3, 40),
    "event": st.sampled_from(EVENTS) | st.text(max_size=10),
    "request_id": st.text(max_size=20),
    "at": st.text(max_size=30),
    "previous": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    "data": st.dictionaries(st.text(max_size=6), SCALARS, max_size=3),
}


def fill(ledger: Ledger) -> Ledger:
    """Three requests: one served, one failed, one served after sharing a record."""
    ledger.append("received", "req-a", record_hashes=["h1", "h2"], reason="art. 17")
    ledger.append("received", "req-b", record_hashes=["h3"])
    ledger.append("applied", "req-a", git_sha="a" * 40, tags=["unlearn/forget/req-a"])
    ledger.append("served", "req-a", version="2")
    ledger.append("failed", "req-b", reason="metric gate", version="3")
    ledger.append("received", "req-c", record_hashes=["h2", "h4"])
    ledger.append("applied", "req-c", git_sha="c" * 40)
    ledger.append("served", "req-c", version="4")
    return ledger


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_lines(path: Path, lines: list[str]) -> Ledger:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return Ledger(path)


def canonical(raw: dict[str, Any]) -> str:
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return fill(Ledger(tmp_path / "ledger.jsonl"))


@pytest.fixture(scope="module")
def intact_lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The lines of a filled ledger, written once for the property tests."""
    path = tmp_path_factory.mktemp("intact") / "ledger.jsonl"
    fill(Ledger(path))
    return lines_of(path)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file that each hypothesis example overwrites whole."""
    return tmp_path_factory.mktemp("tampered") / "ledger.jsonl"


# ----------------------------------------------------------------------- appending
def test_a_missing_ledger_is_empty_and_construction_touches_nothing(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "not-yet" / "ledger.jsonl")
    assert not (tmp_path / "not-yet").exists()
    assert list(ledger.entries()) == []
    assert ledger.requests() == {}
    assert ledger.request("req-a") is None
    assert ledger.verify_chain() == []
    assert ledger.serving_requests(["h1"]) == {}


def test_each_entry_is_one_canonical_line_chained_to_the_one_before(ledger: Ledger) -> None:
    lines = lines_of(ledger.path)
    entries = list(ledger.entries())
    assert [e.seq for e in entries] == list(range(8))
    assert [e.to_line() for e in entries] == lines
    assert entries[0].previous == GENESIS
    for line, entry in zip(lines, entries[1:], strict=False):
        assert entry.previous == hashlib.sha256(line.encode()).hexdigest()
    first = json.loads(lines[0])
    # Each line carries the hash of its own canonical body.
    body = json.dumps(
        {k: v for k, v in first.items() if k != "hash"}, sort_keys=True, separators=(",", ":")
    )
    assert first.pop("hash") == hashlib.sha256(body.encode()).hexdigest()
    assert first == {
        "seq": 0,
        "event": "received",
        "request_id": "req-a",
        "at": entries[0].at,
        "previous": GENESIS,
        "data": {"record_hashes": ["h1", "h2"], "reason": "art. 17"},
    }


def test_append_returns_the_entry_it_wrote(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "deep" / "ledger.jsonl")
    first = ledger.append("received", "req-x", record_hashes=["h9"])
    second = ledger.append("failed", "req-x", reason="gate")
    assert (first.seq, second.seq) == (0, 1)
    assert list(ledger.entries()) == [first, second]
    assert second.previous == hashlib.sha256(first.to_line().encode()).hexdigest()


# ----------------------------------------------------------------------- folding
def test_states_fold_from_received_through_applied_to_served(ledger: Ledger) -> None:
    states = ledger.requests()
    assert list(states) == ["req-a", "req-b", "req-c"]
    entries = list(ledger.entries())
    served = states["req-a"]
    assert isinstance(served, RequestState)
    assert served.state == "served"
    assert served.record_hashes == ["h1", "h2"]
    assert served.received_at == entries[0].at
    assert served.applied == {
        "git_sha": "a" * 40,
        "tags": ["unlearn/forget/req-a"],
        "at": entries[2].at,
    }
    assert served.served == {"version": "2", "at": entries[3].at}
    assert served.failures == []
    failed = states["req-b"]
    assert failed.state == "failed"
    assert failed.applied is None
    assert failed.served is None
    assert failed.failures == [{"reason": "metric gate", "version": "3", "at": entries[4].at}]


def test_a_request_received_only_is_received(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("received", "req-new", record_hashes=["h1"])
    state = ledger.request("req-new")
    assert state is not None
    assert (state.state, state.applied, state.served, state.failures) == (
        "received",
        None,
        None,
        [],
    )


def test_a_failure_after_serving_keeps_the_request_served(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("received", "req-a", record_hashes=["h1"])
    ledger.append("failed", "req-a", reason="crash")
    assert ledger.request("req-a").state == "failed"  # type: ignore[union-attr]
    ledger.append("served", "req-a", version="2")
    assert ledger.request("req-a").state == "served"  # type: ignore[union-attr]
    ledger.append("failed", "req-a", reason="later gate", version="3")
    state = ledger.request("req-a")
    assert state is not None
    assert state.state == "served"
    assert [f["reason"] for f in state.failures] == ["crash", "later gate"]


def test_serving_requests_names_the_first_served_request_of_each_hash(ledger: Ledger) -> None:
    found = ledger.serving_requests(["h1", "h2", "h3", "h4", "never-seen"])
    assert {h: s.request_id for h, s in found.items()} == {
        "h1": "req-a",
        "h2": "req-a",  # req-c forgot it too, later
        "h4": "req-c",
    }
    # h3 belongs to req-b, which failed: never served, so omitted.
    assert ledger.serving_requests(["h3"]) == {}


# ------------------------------------------------------------------- the hash chain
def test_an_intact_ledger_has_no_problems(ledger: Ledger) -> None:
    assert ledger.verify_chain() == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_editing_any_field_of_an_entry_is_detected(
    intact_lines: list[str], scratch: Path, data: st.DataObject
) -> None:
    # The last line is left to test_editing_the_last_entry_is_detected.
    index = data.draw(st.integers(0, len(intact_lines) - 2), label="line index")
    field = data.draw(st.sampled_from(FIELDS), label="field")
    raw = json.loads(intact_lines[index])
    raw[field] = data.draw(REPLACEMENTS[field].filter(lambda v: v != raw[field]), label="value")
    tampered = [*intact_lines]
    tampered[index] = canonical(raw)
    problems = write_lines(scratch, tampered).verify_chain()
    assert problems, f"editing {field} of line {index + 1} went unnoticed"
    assert all(p.startswith("line ") for p in problems)


@pytest.mark.parametrize("index", range(7))
def test_deleting_a_line_is_detected(ledger: Ledger, index: int) -> None:
    lines = lines_of(ledger.path)
    del lines[index]
    problems = write_lines(ledger.path, lines).verify_chain()
    assert f"line {index + 1}: does not chain to the line before it" in problems


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(range(8)).filter(lambda p: list(p) != list(range(8))))
def test_reordering_lines_is_detected(
    intact_lines: list[str], scratch: Path, order: list[int]
) -> None:
    problems = write_lines(scratch, [intact_lines[i] for i in order]).verify_chain()
    assert problems


def test_editing_the_last_entry_is_detected(ledger: Ledger) -> None:
    # The newest entry is the one that says how a request ended: turning a `failed` into
    # a `served` (or changing the version that serves it) must not go unnoticed.
    ledger.append("failed", "req-d", reason="data gate", version="5")
    lines = lines_of(ledger.path)
    raw = json.loads(lines[-1])
    raw["event"] = "served"
    raw["data"] = {"version": "5"}
    problems = write_lines(ledger.path, [*lines[:-1], canonical(raw)]).verify_chain()
    assert problems, "the last entry was rewritten from failed to served unnoticed"


@pytest.mark.parametrize(
    "line",
    ["[1, 2]", "7", '{"seq": "two", "event": "served", "request_id": "r", "at": "", "data": {}}'],
    ids=["array", "number", "text-seq"],
)
def test_verify_chain_reports_a_line_that_is_json_but_not_an_entry(
    ledger: Ledger, line: str
) -> None:
    # verify_chain audits a ledger that may have been tampered with: it reports, not raises.
    lines = lines_of(ledger.path)
    lines[1] = line
    problems = write_lines(ledger.path, lines).verify_chain()
    assert any(p.startswith("line 2:") for p in problems)


# -------------------------------------------------------------------- malformed lines
@pytest.mark.parametrize(
    "line",
    [
        "not json at all",
        "[1, 2]",
        '"a string"',
        '{"seq": 2, "event": "served"}',
        '{"seq": "x", "event": "served", "request_id": "r", "at": "", "previous": ""}',
        '{"seq": 2, "event": "served", "request_id": "r", "at": "", "previous": "", "data": [1]}',
        '{"seq": 2, "event": "deleted", "request_id": "r", "at": "", "previous": ""}',
    ],
    ids=[
        "not-json",
        "array",
        "string",
        "missing-keys",
        "text-seq",
        "list-data",
        "unknown-event",
    ],
)
def test_a_malformed_line_raises_store_error_with_its_line_number(
    ledger: Ledger, line: str
) -> None:
    lines = lines_of(ledger.path)
    lines.insert(2, line)
    bad = write_lines(ledger.path, lines)
    with pytest.raises(StoreError, match=r"line 3 is not a ledger entry") as caught:
        bad.requests()
    assert caught.value.path == ledger.path


def test_blank_lines_are_skipped_but_counted(ledger: Ledger) -> None:
    lines = lines_of(ledger.path)
    write_lines(ledger.path, ["", *lines[:2], "", "{broken"])
    with pytest.raises(StoreError, match=r"line 5 is not a ledger entry"):
        list(Ledger(ledger.path).entries())


# Written on 2026-12-02 by the code of main before canonical JSON moved to
# unlearn_ops.canonical (non-ASCII escaped as \uXXXX, as every ledger on disk has it).
FROZEN_LEDGER_LINES = (
    (
        r'{"at":"2026-11-20T09:30:00.000+00:00","data":{"reason":"Recht auf L\u00f6schung '
        r'\u2013 Art. 17","record_hashes":["h1","h2"]},"event":"received","hash":"71d4db98'
        r'd658ff237f2c990aeb434a78a84a9ca0744bc6c12a4d972c27e35882","previous":"0000000000'
        r'000000000000000000000000000000000000000000000000000000","request_id":"req-\u00fc'
        r'","seq":0}'
    ),
    (
        r'{"at":"2026-11-20T09:31:00.000+00:00","data":{"git_sha":"aaaaaaaaaaaaaaaaaaaaaaa'
        r'aaaaaaaaaaaaaaaaa"},"event":"applied","hash":"e002a64b7f41e8b7791bda911584a5216d'
        r'df1eb36e680ab140bb022a1a3b68dc","previous":"1ff8dfab3c6666c8c00eb377b1a073342264'
        r'4bc3cd2a9174dfa05e54c6547c81","request_id":"req-\u00fc","seq":1}'
    ),
    (
        r'{"at":"2026-11-20T09:40:00.000+00:00","data":{"reason":"metric gate: accuracy \u'
        r'2265 0.9 missed"},"event":"failed","hash":"4eef097b0a9e074880c6cb06ddfded0989bb6'
        r'97cc667bf5e81d3adabe99f40ba","previous":"5387cd3c24139ff2f6af11bf28d5aef2be96e16'
        r'5a23db7e00e06e1b901ed3bbc","request_id":"req-\u00fc","seq":2}'
    ),
)


def test_a_ledger_written_by_the_previous_code_still_checks(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_text("\n".join(FROZEN_LEDGER_LINES) + "\n", encoding="utf-8")
    ledger = Ledger(path)
    assert ledger.verify_chain() == []
    assert [entry.to_line() for entry in ledger.entries()] == list(FROZEN_LEDGER_LINES)
    assert ledger.request("req-\u00fc") is not None
    ledger.append("received", "req-next", record_hashes=["h9"])
    assert ledger.verify_chain() == []


def test_received_entries_keep_the_shards_their_removal_retrains(ledger: Ledger) -> None:
    ledger.append("received", "new", record_hashes=["h1"], retrains={"0": 1, "2": 0})
    ledger.append("received", "old", record_hashes=["h2"])  # written before `retrains`
    ledger.append("received", "odd", record_hashes=["h3"], retrains={"x": 1, "1": None})
    states = ledger.requests()
    assert states["new"].planned_shards == {0: 1, 2: 0}
    assert states["old"].planned_shards == {}
    assert states["odd"].planned_shards == {}
    assert ledger.verify_chain() == []


def test_interrupted_requests_are_those_removed_and_never_served(ledger: Ledger) -> None:
    ledger.append("received", "killed", record_hashes=["h1", "h2"])
    ledger.append("received", "not-removed", record_hashes=["h3", "h4"])
    ledger.append("received", "gates", record_hashes=["h5"])
    ledger.append("applied", "gates", git_sha="a" * 40)
    ledger.append("failed", "gates", reason="metric gate", version="3")
    ledger.append("received", "done", record_hashes=["h6"])
    ledger.append("served", "done", version="4")
    forgotten = {"h1", "h2", "h3", "h5", "h6"}
    asked = ["killed", "not-removed", "gates", "done", "never-received"]
    found = ledger.interrupted(asked, forgotten)
    assert sorted(found) == ["gates", "killed"]
    assert found["killed"].state == "received"
    assert ledger.interrupted(["killed"], set()) == {}


def test_purged_versions_say_when_and_for_whom(tmp_path: Path) -> None:
    from unlearn_ops.errors import VersionNotFoundError, VersionPurgedError

    ledger = Ledger(tmp_path / "ledger.jsonl")
    assert ledger.purged_versions() == {}
    ledger.append("received", "r1", record_hashes=["a"])
    first = ledger.append("purged", "r1", versions=["1"])
    second = ledger.append("purged", "r2", versions=["1", "2"])
    assert ledger.purged_versions() == {
        "1": (first.at, ("r1", "r2")),
        "2": (second.at, ("r2",)),
    }
    missing = VersionNotFoundError("m", "1", ["3"])
    error = VersionPurgedError(missing, *ledger.purged_versions()["1"])
    assert isinstance(error, VersionNotFoundError)
    assert str(error) == (
        f"version 1 of model 'm' was purged at {first.at}: it held what r1, r2 asked to "
        "forget, and a purged version never comes back; versions are: 3"
    )

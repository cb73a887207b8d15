"""Canonical JSON: the two spellings that signatures and hash chains depend on."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import PlainSerializer

from unlearn_ops.canonical import JsonReady, canonical_json, canonical_text, json_ready

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


def test_keys_sorted_no_whitespace_utf8_kept() -> None:
    value = {"b": 1, "a": [1, {"d": "é–", "c": None}]}
    assert canonical_json(value) == '{"a":[1,{"c":null,"d":"é–"}],"b":1}'.encode()
    assert canonical_text(value) == '{"a":[1,{"c":null,"d":"é–"}],"b":1}'


def test_ascii_only_escapes_like_the_ledger_on_disk() -> None:
    assert canonical_text({"r": "Löschung – ≥"}, ascii_only=True) == (
        '{"r":"L\\u00f6schung \\u2013 \\u2265"}'
    )


@given(JSON_VALUES)
def test_equal_values_give_equal_text_whatever_the_key_order(value: object) -> None:
    reordered = json.loads(json.dumps(value), object_pairs_hook=lambda p: dict(reversed(p)))
    assert canonical_json(reordered) == canonical_json(value)
    assert json.loads(canonical_json(value)) == value
    assert canonical_text(value, ascii_only=True).isascii()


def test_a_value_json_cannot_hold_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        canonical_json({"when": object()})


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool


@dataclass(frozen=True)
class Row:
    version: str
    ids: tuple[str, ...]
    per_shard: Mapping[int, str]
    gates: tuple[Gate, ...]
    at: Annotated[datetime, PlainSerializer(lambda moment: moment.strftime("%Y-%m-%d"))]
    parent: str | None = None
    notes: list[str] = field(default_factory=list)


def test_json_ready_is_the_fields_in_order_as_json_would_read_them_back() -> None:
    row = Row(
        "2", ("r1", "r2"), {3: "md5"}, (Gate("data", True),), datetime(2026, 3, 1, tzinfo=UTC)
    )
    ready = json_ready(row)
    assert ready == {
        "version": "2",
        "ids": ["r1", "r2"],
        "per_shard": {"3": "md5"},
        "gates": [{"name": "data", "passed": True}],
        "at": "2026-03-01",
        "parent": None,
        "notes": [],
    }
    assert list(ready) == ["version", "ids", "per_shard", "gates", "at", "parent", "notes"]
    assert json.loads(json.dumps(ready)) == ready
    assert json_ready(Gate("metric", False)) == {"name": "metric", "passed": False}


@dataclass(frozen=True)
class Summary(JsonReady):
    version: str
    shards: tuple[int, ...]


def test_a_json_ready_dataclass_gives_its_json_ready_view() -> None:
    summary = Summary("3", (0, 2))
    assert summary.to_dict() == json_ready(summary) == {"version": "3", "shards": [0, 2]}

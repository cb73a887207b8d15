"""Version provenance: the `unlearn.*` tags, the plain-words description, request lists."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from unlearn_ops.serving.provenance import (
    TAG_PREFIX,
    VersionProvenance,
    describe_version,
    parse_request_list,
)

# The limit past which the cumulative request list is replaced (provenance.py).
LIMIT = 90_000


def make_provenance(**changes: Any) -> VersionProvenance:
    """A `forget` version of a 3-shard ensemble that retrained shard 1 from slice 2."""
    base = VersionProvenance(
        kind="forget",
        request_ids=("req-1",),
        honoured_request_ids=("req-0", "req-1"),
        parent_version="1",
        git_sha="0123456789abcdef0123456789abcdef01234567",
        data_md5="d41d8cd98f00b204e9800998ecf8427e.dir",
        shard_md5s={0: "m0", 1: "m1", 2: "m2"},
        shards_retrained=(1,),
        first_stages={1: 2},
        records_forgotten=2,
        training_hash="t" * 64,
        seed=7,
        weights={0: "w0", 1: "w1", 2: "w2"},
        gates={"data": {"passed": True, "checks": 3}, "metric": {"passed": True}},
        timings={"retraining": 1.23456, "gates": 0.5},
        accuracy=0.912345678,
    )
    return dataclasses.replace(base, **changes)


def ids_dumping_to(length: int) -> list[str]:
    """Request ids whose JSON list (as json.dumps writes it) is exactly `length` characters."""
    ids = [f"req-{i:06d}" for i in range(length // 14)]  # '"req-000000", ' is 14 characters
    ids[-1] += "x" * (length - len(json.dumps(ids)))
    assert len(json.dumps(ids)) == length
    return ids


# ---------------------------------------------------------------------------- tags
def test_every_tag_is_under_the_prefix_and_a_string() -> None:
    tags = make_provenance(extra={"source": "cli"}).tags()
    assert tags
    assert all(key.startswith(TAG_PREFIX) for key in tags)
    assert all(isinstance(value, str) for value in tags.values())
    assert TAG_PREFIX == "unlearn."
    assert tags["unlearn.source"] == "cli"


def test_tags_hold_the_provenance_as_text() -> None:
    tags = make_provenance().tags()
    assert tags["unlearn.kind"] == "forget"
    assert parse_request_list(tags["unlearn.request_ids"]) == ["req-1"]
    assert parse_request_list(tags["unlearn.honoured_requests"]) == ["req-0", "req-1"]
    assert tags["unlearn.honoured_count"] == "2"
    assert tags["unlearn.parent_version"] == "1"
    assert json.loads(tags["unlearn.shard_md5s"]) == {"0": "m0", "1": "m1", "2": "m2"}
    assert json.loads(tags["unlearn.shards_retrained"]) == [1]
    assert json.loads(tags["unlearn.first_stages"]) == {"1": 2}
    assert tags["unlearn.records_forgotten"] == "2"
    assert tags["unlearn.params_hash"] == "t" * 64
    assert tags["unlearn.seed"] == "7"
    assert json.loads(tags["unlearn.weights"]) == {"0": "w0", "1": "w1", "2": "w2"}
    assert json.loads(tags["unlearn.gates"])["data"]["checks"] == 3
    assert tags["unlearn.gates_passed"] == "true"
    assert json.loads(tags["unlearn.timings"]) == {"retraining": 1.235, "gates": 0.5}
    assert tags["unlearn.accuracy"] == "0.912346"


def test_a_first_version_has_an_empty_parent_and_failed_gates_say_false() -> None:
    tags = make_provenance(
        parent_version=None, gates={"data": {"passed": True}, "metric": {"passed": False}}
    ).tags()
    assert tags["unlearn.parent_version"] == ""
    assert tags["unlearn.gates_passed"] == "false"


def test_the_request_list_is_kept_whole_up_to_the_limit() -> None:
    ids = ids_dumping_to(LIMIT)
    tags = make_provenance(honoured_request_ids=tuple(ids)).tags()
    assert parse_request_list(tags["unlearn.honoured_requests"]) == ids


def test_a_request_list_past_the_limit_is_replaced_by_a_pointer() -> None:
    ids = ids_dumping_to(LIMIT + 1)
    provenance = make_provenance(honoured_request_ids=tuple(ids))
    tags = provenance.tags()
    honoured = tags["unlearn.honoured_requests"]
    assert len(honoured) < 100
    assert parse_request_list(honoured) == ["(list too long: see provenance.json of the run)"]
    # The count stays true, and the full list stays in provenance.json.
    assert tags["unlearn.honoured_count"] == str(len(ids))
    assert provenance.to_dict()["honoured_request_ids"] == ids


def test_to_dict_is_json_ready_with_text_keys() -> None:
    data = json.loads(json.dumps(make_provenance().to_dict()))
    assert data["shard_md5s"] == {"0": "m0", "1": "m1", "2": "m2"}
    assert data["first_stages"] == {"1": 2}
    assert data["honoured_request_ids"] == ["req-0", "req-1"]
    assert data["accuracy"] == pytest.approx(0.912345678)


def test_gates_passed_needs_every_gate() -> None:
    assert make_provenance().gates_passed
    assert not make_provenance(gates={"data": {"passed": True}, "metric": {}}).gates_passed


# --------------------------------------------------------------------- description
def test_a_trained_version_is_described_as_trained_from_scratch() -> None:
    provenance = make_provenance(
        kind="train",
        request_ids=(),
        honoured_request_ids=(),
        parent_version=None,
        shards_retrained=(0, 1, 2),
        first_stages={0: 0, 1: 0, 2: 0},
        records_forgotten=0,
    )
    assert describe_version(provenance, total_shards=3) == (
        "Trained from scratch on all 3 shards. "
        "Data: git 0123456789ab, DVC md5 d41d8cd98f00b204e9800998ecf8427e.dir. "
        "Held-out accuracy 0.9123; gates passed. Honours 0 deletion request(s)."
    )


def test_a_forget_of_one_shard_names_the_shard_and_its_first_slice() -> None:
    assert describe_version(make_provenance(), total_shards=3) == (
        "Forgets request req-1: 2 records, shard 1 retrained from slice 2. "
        "Derived from version 1. "
        "Data: git 0123456789ab, DVC md5 d41d8cd98f00b204e9800998ecf8427e.dir. "
        "Held-out accuracy 0.9123; gates passed. Honours 2 deletion request(s)."
    )


def test_with_the_model_name_the_parent_is_a_link_to_its_page_in_the_ui() -> None:
    text = describe_version(make_provenance(), total_shards=3, model_name="my model")
    assert " Derived from [version 1](#/models/my%20model/versions/1). Data: git " in text
    trained = make_provenance(kind="train", parent_version=None)
    assert "](" not in describe_version(trained, total_shards=3, model_name="my model")


@pytest.mark.parametrize(
    ("shards", "first_stages", "expected"),
    [
        ((0, 2), {0: 1, 2: 1}, "shards 0 and 2 retrained from slice 1."),
        ((0, 2, 5), {0: 0, 2: 1, 5: 0}, "shards 0, 2 and 5 retrained from their first affected"),
    ],
)
def test_a_forget_of_several_shards_lists_them(
    shards: tuple[int, ...], first_stages: dict[int, int], expected: str
) -> None:
    provenance = make_provenance(
        request_ids=("req-1", "req-2"), shards_retrained=shards, first_stages=first_stages
    )
    text = describe_version(provenance, total_shards=8)
    assert text.startswith("Forgets request req-1, req-2: 2 records, ")
    assert expected in text


def test_a_forget_of_held_out_records_only_retrains_nothing() -> None:
    provenance = make_provenance(shards_retrained=(), first_stages={}, records_forgotten=1)
    text = describe_version(provenance, total_shards=3)
    assert "Forgets request req-1: 1 records, no shard retrained (held-out records only)." in text
    assert "slice" not in text


def test_a_provisional_version_says_how_it_forgot_not_that_nothing_retrained() -> None:
    provenance = make_provenance(
        shards_retrained=(), first_stages={}, approximate_method="salun", records_forgotten=3
    )
    text = describe_version(provenance, total_shards=1)
    assert text.startswith(
        "Forgets request req-1: 3 records, forgotten approximately by salun, no retraining "
        "(provisional until the exact retrain). Derived from version 1."
    )
    assert "held-out records only" not in text
    assert provenance.to_dict()["approximate_method"] == "salun"


def test_a_replay_is_described_as_one() -> None:
    text = describe_version(make_provenance(kind="replay"), total_shards=3)
    assert text.startswith("Replays deletions for request req-1: 2 records, shard 1 retrained")


def test_failed_gates_are_shouted() -> None:
    provenance = make_provenance(gates={"data": {"passed": False}})
    assert "gates FAILED." in describe_version(provenance, total_shards=3)


def test_a_version_registered_by_dvc_repro_is_not_described_as_a_replay_of_no_request() -> None:
    # `unlearn-ops register` (the `register` stage of dvc.yaml) registers kind="repro",
    # with no request and no record of which shards trained.
    provenance = make_provenance(
        kind="repro",  # type: ignore[arg-type]
        request_ids=(),
        shards_retrained=(),
        first_stages={},
        records_forgotten=0,
    )
    text = describe_version(provenance, total_shards=3)
    assert "request :" not in text, text
    assert not text.startswith("Replays"), text


# ------------------------------------------------------------------- request lists
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["req-1", "req-2"]', ["req-1", "req-2"]),
        ("[]", []),
        ("[1, 2]", ["1", "2"]),
        (None, []),
        ("", []),
        ("not json", []),
        ('{"req-1": true}', []),
        ('"req-1"', []),
        ('["req-1"', []),
    ],
)
def test_parse_request_list(value: str | None, expected: list[str]) -> None:
    assert parse_request_list(value) == expected


def test_long_gate_results_are_trimmed_into_valid_json_below_the_tag_limit() -> None:
    outcome = {
        "expectation": "expect_table_columns_to_match_set",
        "column": None,
        "success": True,
        "observed": [f"pixel_{i}" for i in range(64)],
        "description": "shard 3 has exactly its columns",
    }
    failed = {**outcome, "success": False, "description": "shard 4 lacks a column"}
    gates = {"data": {"gate": "data", "passed": False, "outcomes": [outcome] * 40 + [failed]}}
    tag = make_provenance(gates=gates).tags()["unlearn.gates"]
    assert len(tag) <= 7_900
    kept = json.loads(tag)["data"]
    assert kept["passed"] is False
    assert "observed" not in kept["outcomes"][0]
    assert failed["description"] in [o["description"] for o in kept["outcomes"]]


def test_provenance_json_leaves_out_what_the_tags_hold_whole() -> None:
    provenance = make_provenance()
    tags = provenance.tags()

    artifact = json.loads(json.dumps(provenance.artifact_dict()))

    assert "gates" not in artifact
    assert "honoured_request_ids" not in artifact
    assert artifact["in_tags"] == {
        "gates": "unlearn.gates",
        "honoured_request_ids": "unlearn.honoured_requests",
    }
    # File and tags together are the whole provenance.
    assert json.loads(tags["unlearn.gates"]) == provenance.to_dict()["gates"]
    assert parse_request_list(tags["unlearn.honoured_requests"]) == ["req-0", "req-1"]
    whole = provenance.to_dict()
    assert {k: v for k, v in whole.items() if k not in artifact["in_tags"]} == {
        k: v for k, v in artifact.items() if k != "in_tags"
    }


def test_provenance_json_keeps_what_a_tag_had_to_shorten() -> None:
    outcome = {"expectation": "e", "column": None, "success": True, "observed": "x" * 200}
    gates = {"data": {"gate": "data", "passed": True, "outcomes": [outcome] * 60}}
    ids = ids_dumping_to(LIMIT + 1)
    provenance = make_provenance(gates=gates, honoured_request_ids=tuple(ids))

    artifact = provenance.artifact_dict()

    assert artifact["gates"] == gates
    assert artifact["honoured_request_ids"] == ids
    assert artifact["in_tags"] == {}

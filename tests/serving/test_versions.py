"""Registered versions as the core sees them: tags by short key, requests, gates."""

from __future__ import annotations

import json

from unlearn_ops.serving.versions import CHAMPION, PREVIOUS, VersionInfo


def test_tags_are_read_by_their_short_key() -> None:
    info = VersionInfo(
        "3",
        "run",
        1_700_000_000_000,
        "Forgets request r2.",
        tags={
            "unlearn.request_ids": json.dumps(["r2"]),
            "unlearn.honoured_requests": json.dumps(["r1", "r2"]),
            "unlearn.gates_passed": "true",
            "mlflow.other": "x",
        },
        aliases=(CHAMPION,),
    )
    assert info.tag("gates_passed") == "true"
    assert info.tag("other") == ""
    assert info.tag("missing", "default") == "default"
    assert info.request_ids == ["r2"]
    assert info.honoured_requests == ["r1", "r2"]
    assert info.gates_passed
    assert info.to_dict() == {
        "version": "3",
        "run_id": "run",
        "created_at": 1_700_000_000_000,
        "aliases": ["champion"],
        "description": "Forgets request r2.",
        "tags": dict(sorted(info.tags.items())),
    }


def test_a_version_without_tags_honours_nothing_and_did_not_pass() -> None:
    info = VersionInfo("1", "", 0, "")
    assert info.honoured_requests == []
    assert info.request_ids == []
    assert not info.gates_passed
    assert (CHAMPION, PREVIOUS) == ("champion", "previous")

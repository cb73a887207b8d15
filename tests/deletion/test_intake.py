"""The pure parts of the drain's bookkeeping: the subject index, and what an approver is shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearn_ops.deletion.approval import approval_markdown
from unlearn_ops.deletion.intake import (
    build_subject_index,
    read_subject_index,
    write_subject_index,
)
from unlearn_ops.errors import StoreError
from unlearn_ops.settings import Settings

SETTINGS = Settings(id_hash_key="intake-test-key")  # type: ignore[arg-type]


def test_the_subject_index_holds_keyed_hashes_only(tmp_path: Path) -> None:
    index = build_subject_index(SETTINGS, ["ann", "bob", "ann", 7], ["r1", "r2", "r3", 9])
    assert index[SETTINGS.hash_subject_id("ann")] == sorted(
        [SETTINGS.hash_record_id("r1"), SETTINGS.hash_record_id("r3")]
    )
    assert index[SETTINGS.hash_subject_id("7")] == [SETTINGS.hash_record_id("9")]
    write_subject_index(tmp_path, index)
    text = (tmp_path / "subjects.json").read_text()
    assert not any(f'"{raw}"' in text for raw in ("ann", "bob", "r1", "r2", "r3"))
    assert read_subject_index(tmp_path) == index


def test_a_subject_hash_is_not_a_record_hash() -> None:
    assert SETTINGS.hash_subject_id("17") != SETTINGS.hash_record_id("17")


def test_no_index_reads_as_empty_and_a_broken_one_is_a_store_error(tmp_path: Path) -> None:
    assert read_subject_index(tmp_path) == {}
    (tmp_path / "subjects.json").write_text("{broken")
    with pytest.raises(StoreError, match="not valid JSON"):
        read_subject_index(tmp_path)
    (tmp_path / "subjects.json").write_text(json.dumps({"other": 1}))
    with pytest.raises(StoreError, match="no 'subjects' mapping"):
        read_subject_index(tmp_path)


def test_the_approval_form_says_what_will_happen() -> None:
    summary = {
        "requests": [f"r{i}" for i in range(12)],
        "records": 30,
        "shards": [0, 3],
        "stages_to_retrain": 5,
        "retraining_fraction": 0.1875,
        "expected_accuracy_change": -0.0021,
        "based_on_versions": 4,
    }
    text = approval_markdown(summary)
    assert "**Forget 30 records** for 12 request(s): r0, r1" in text
    assert "and 2 more" in text
    assert "Shards to retrain: [0, 3]" in text
    assert "Stages to retrain: 5 (18.8% of a full training)" in text
    assert "Expected accuracy change: -0.0021 (mean of the last 4 forget versions)" in text
    first = approval_markdown(summary | {"expected_accuracy_change": None})
    assert "unknown (no forget version yet)" in first

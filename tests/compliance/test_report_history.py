"""The report's version rows outlive the versions: purged ones come from the ledger (#11)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.conftest import tagged_version
from unlearn_ops.adapters.mlflow.registry import VersionInfo
from unlearn_ops.compliance.audit import RecordedVersion, version_facts
from unlearn_ops.compliance.report import version_rows

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def registered(number: str, requests: list[str], at: datetime) -> VersionInfo:
    tags = {
        "kind": "forget" if requests else "train",
        "request_ids": json.dumps(requests),
        "honoured_count": str(len(requests)),
        "gates": json.dumps({"data": {"passed": True, "outcomes": [{"success": True}]}}),
        "gates_passed": "true",
        "accuracy": "0.93333",
    }
    return tagged_version(number, tags, at=at, aliases=("champion",) if number == "3" else ())


def as_recorded(info: VersionInfo, purged_at: datetime) -> RecordedVersion:
    """What `recorded_versions` reads back from a `purged` entry of `info`."""
    facts = version_facts(info)
    return RecordedVersion(
        info.version,
        kind=facts["kind"],
        registered_at=datetime.fromisoformat(facts["registered_at"]),
        request_ids=tuple(facts["request_ids"]),
        honoured_count=facts["honoured_count"],
        gates=tuple(version_rows([info])[0].gates),
        gates_passed=facts["gates_passed"],
        accuracy=facts["accuracy"],
        purged_at=purged_at,
    )


def test_purged_versions_keep_their_rows_and_say_when_they_went() -> None:
    one, two, three = (
        registered("1", [], T0),
        registered("2", ["r1"], T0 + timedelta(days=1)),
        registered("3", ["r2"], T0 + timedelta(days=2)),
    )
    live = version_rows([one, two, three])
    purged_at = T0 + timedelta(days=40)
    recorded = {
        "1": as_recorded(one, purged_at),
        "2": as_recorded(two, purged_at),
        "7": RecordedVersion("7", purged_at=purged_at),  # an old ledger: number only
    }
    after = version_rows([three], recorded)
    assert [row.version for row in after] == ["1", "2", "3"]
    for before_row, after_row in zip(live[:2], after[:2], strict=True):
        assert after_row.purged_at == purged_at
        assert after_row.to_dict() == {**before_row.to_dict(), "purged_at": purged_at.isoformat()}
    assert after[2] == live[2]
    assert after[2].purged_at is None

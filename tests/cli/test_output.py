"""The shard bars: they take training's stage reports for their duration, and only then."""

from __future__ import annotations

import io

import pytest

from unlearn_ops.cli.output import shard_progress
from unlearn_ops.sisa.progress import report_stage, reporting


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so that the bars are drawn."""

    def isatty(self) -> bool:
        return True


def test_the_bars_take_the_stage_reports_while_they_stand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    outer: list[tuple[int, int, int]] = []
    with reporting(lambda *stage: outer.append(stage)):
        with shard_progress(True, [0, 1], 2):
            report_stage(1, 0, 2)
            report_stage(1, 1, 2)
        report_stage(0, 0, 2)
    assert outer == [(0, 0, 2)]
    assert "shard 1" in stderr.getvalue()
    assert "2/2" in stderr.getvalue()


@pytest.mark.parametrize(
    ("enabled", "shard_ids", "terminal"),
    [(False, [0], True), (True, [], True), (True, [0], False)],
    ids=["disabled", "no shards", "not a terminal"],
)
def test_without_bars_the_stage_reports_go_nowhere(
    monkeypatch: pytest.MonkeyPatch, enabled: bool, shard_ids: list[int], terminal: bool
) -> None:
    stderr = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    outer: list[tuple[int, int, int]] = []
    with reporting(lambda *stage: outer.append(stage)), shard_progress(enabled, shard_ids, 2):
        report_stage(0, 0, 2)
    assert outer == []
    assert stderr.getvalue() == ""

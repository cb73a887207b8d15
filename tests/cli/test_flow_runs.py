"""The console of flow runs from the CLI: a run an expected error ended is not printed twice."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import pytest
import yaml

from unlearn_ops.adapters.prefect.console import ExpectedErrorFilter
from unlearn_ops.errors import DatasetError

if TYPE_CHECKING:
    from tests.cli.conftest import Console

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def exc_info(error: BaseException) -> ExcInfo:
    try:
        raise error
    except BaseException:  # to capture a real traceback
        info = sys.exc_info()
    assert info[0] is not None
    assert info[1] is not None
    return info[0], info[1], info[2]


def record(
    message: str,
    *,
    task_run_id: str | None = None,
    flow_run_id: str | None = None,
    error: BaseException | None = None,
    level: int = logging.ERROR,
) -> logging.LogRecord:
    """A record as Prefect's run loggers make it: the run ids are attributes of the record."""
    extra = {
        key: value
        for key, value in (("task_run_id", task_run_id), ("flow_run_id", flow_run_id))
        if value is not None
    }
    logger = logging.getLogger("prefect.task_runs" if task_run_id else "prefect.flow_runs")
    return logger.makeRecord(
        logger.name,
        level,
        __file__,
        1,
        message,
        (),
        exc_info(error) if error is not None else None,
        extra=extra,
    )


def test_the_records_of_a_run_that_an_expected_error_ended_are_dropped() -> None:
    quiet = ExpectedErrorFilter()
    error = DatasetError("x.csv", "file not found")
    # A task fails, then its flow: each logs the exception, then its closing state.
    assert not quiet.filter(
        record("Task run failed with exception", task_run_id="t1", flow_run_id="f1", error=error)
    )
    assert not quiet.filter(
        record(
            "Finished in state Failed('Task run encountered an exception DatasetError: x')",
            task_run_id="t1",
            flow_run_id="f1",
        )
    )
    assert not quiet.filter(
        record("Encountered exception during execution", flow_run_id="f1", error=error)
    )
    assert not quiet.filter(record("Finished in state Failed(...)", flow_run_id="f1"))


def test_other_runs_and_other_errors_keep_their_records() -> None:
    quiet = ExpectedErrorFilter()
    quiet.filter(record("failed", task_run_id="t1", flow_run_id="f1", error=DatasetError("x", "y")))
    # Another task of the same flow, still running, and the flow itself before it failed.
    assert quiet.filter(record("Retrying", task_run_id="t2", flow_run_id="f1"))
    assert quiet.filter(record("still working", flow_run_id="f1", level=logging.WARNING))
    # An unexpected error is a bug: its traceback stays, and so does its run's closing line.
    assert quiet.filter(
        record("Task run failed", task_run_id="t3", flow_run_id="f2", error=KeyError("bug"))
    )
    assert quiet.filter(record("Finished in state Failed('KeyError')", task_run_id="t3"))
    # A message that only names an expected error (no exception, another run) is kept.
    assert quiet.filter(record("DatasetError: mentioned in passing", flow_run_id="f3"))
    # Records of no run at all (Prefect's own loggers) pass.
    assert quiet.filter(record("server ready", level=logging.WARNING))


@pytest.mark.flows
def test_an_error_inside_a_flow_is_one_line_on_the_console(
    tmp_path: Path, console: Console
) -> None:
    """A gate fails inside the train-ensemble flow: Prefect's own records of it stay quiet."""
    assert console(["init", "ws", "--shards", "2", "--slices", "2"], cwd=tmp_path).returncode == 0
    params = yaml.safe_load((tmp_path / "ws" / "params.yaml").read_text())
    params["model"].update({"name": "mlp", "hidden_sizes": [8]})
    params["training"].update({"epochs_per_stage": 1})
    params["gates"].update({"min_accuracy": 1.0})  # no model reaches it
    (tmp_path / "ws" / "params.yaml").write_text(yaml.safe_dump(params))

    result = console(["train", "-w", "ws", "--no-progress"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: version 1 not promoted (no champion was set)")

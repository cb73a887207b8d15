"""The great-expectations plumbing the gates share: an ephemeral context, validations,
errors translated at the boundary, and reading results back.

great_expectations is imported inside the functions (it costs seconds to import).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from unlearn_ops.errors import StoreError, UnlearnOpsError
from unlearn_ops.serving.gates import ExpectationOutcome

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.core.validation_definition import ValidationDefinition
    from great_expectations.data_context.data_context.abstract_data_context import (
        AbstractDataContext,
    )
    from great_expectations.expectations.expectation import Expectation


def ephemeral_context() -> AbstractDataContext:
    """A fresh in-memory context, quiet (no INFO lines, no progress bars)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # Its INFO lines ("Created temporary directory ... for ephemeral docs site") are noise;
    # that module's logger sets its own level, so quieting the parent is not enough.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)

    context = gx.get_context(mode="ephemeral")
    # tqdm would otherwise print a bar per validation into the logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def validation_definition(
    context: AbstractDataContext, name: str, expectations: Iterable[Expectation]
) -> ValidationDefinition:
    """A validation of a whole in-memory DataFrame (passed at run time) by one suite."""
    import great_expectations as gx

    batch_definition = (
        context.data_sources.add_pandas(name)
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe(name)
    )
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=list(expectations)))
    definition = gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
    return context.validation_definitions.add(definition)


@contextmanager
def translated_errors(gate: str) -> Iterator[None]:
    """Turn an exception that great-expectations raises into an unlearn-ops error."""
    from great_expectations.compatibility.pydantic import ValidationError
    from great_expectations.exceptions.exceptions import GreatExpectationsError

    try:
        yield
    except (GreatExpectationsError, ValidationError) as exc:
        raise gate_error(
            gate,
            f"great-expectations failed ({type(exc).__name__}: {one_line(str(exc))})",
            "check the column names and thresholds given to the gate; if they are right, "
            "report this as a bug",
        ) from exc


@contextmanager
def validating(gate: str) -> Iterator[AbstractDataContext]:
    """A fresh ephemeral context, in which great-expectations' errors become the gate's."""
    with translated_errors(gate):
        yield ephemeral_context()


def gate_error(gate: str, problem: str, hint: str) -> UnlearnOpsError:
    """The error of a gate that could not run."""
    # A gate that cannot run is not a gate that failed (that is GateFailedError).
    return StoreError(f"{gate} gate", problem, hint)


def results_by_type(
    run: ExpectationSuiteValidationResult,
) -> dict[str, ExpectationValidationResult]:
    # One expectation per type in each suite; results do not come back in suite order.
    return {type_of(result): result for result in run.results}


def type_of(result: ExpectationValidationResult) -> str:
    """The expectation type of a result."""
    config = result.expectation_config
    return "" if config is None else str(config.type)


def column_of(result: ExpectationValidationResult) -> str | None:
    """The column a result checked, or None for a table-level expectation."""
    config = result.expectation_config
    column = None if config is None else config.kwargs.get("column")
    return None if column is None else str(column)


def exception_message(result: ExpectationValidationResult) -> str | None:
    """great-expectations' message when computing the expectation raised, else None.

    `exception_info` is either one record or one record per metric, keyed by metric id.
    """
    info = result.exception_info or {}
    records = [info] if "raised_exception" in info else list(info.values())
    for record in records:
        if isinstance(record, dict) and record.get("raised_exception"):
            return one_line(str(record.get("exception_message") or "no message"))
    return None


def could_not_run(result: ExpectationValidationResult, where: str) -> ExpectationOutcome | None:
    """A failed outcome saying why, when computing the expectation raised; else None."""
    message = exception_message(result)
    if message is None:
        return None
    column = column_of(result)
    subject = "the table" if column is None else f"column {column!r}"
    return ExpectationOutcome(
        expectation=type_of(result),
        column=column,
        success=False,
        observed=None,
        description=f"{subject} could not be checked in {where}: {message}",
    )


def outcome_of(
    result: ExpectationValidationResult,
    where: str,
    *,
    column: str | None,
    observed: object,
    describe: Callable[[bool], str],
) -> ExpectationOutcome:
    """A result's outcome: the sentence `describe` gives its success, or why it could not run.

    Args:
        result: what great-expectations found for one expectation.
        where: the data it checked, for the sentence of an expectation that raised.
        column: the column the outcome names.
        observed: what was measured (JSON-ready).
        describe: the sentence for a success (True) or a failure (False).
    """
    unrunnable = could_not_run(result, where)
    if unrunnable is not None:
        return unrunnable
    success = bool(result.success)
    return ExpectationOutcome(type_of(result), column, success, observed, describe(success))


def count(number: int, noun: str) -> str:
    """ "1 row", "2 rows"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def verb(number: int, singular: str, plural: str) -> str:
    """The verb form that agrees with `number`."""
    return singular if number == 1 else plural


def one_line(text: str) -> str:
    """`text` with every run of whitespace made one space."""
    return " ".join(text.split())

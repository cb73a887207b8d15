"""Promotion gates checked with great-expectations: the data gate and the metric gate.

The data gate validates every shard table after a forget: no forgotten record remains
(compared by keyed hash, since the ledger keeps only hashes), record ids are present and
unique across all shards, labels are valid classes, and each shard has exactly its columns
and, when known, its row count. The metric gate validates held-out accuracy against a floor
and against the champion's. Either gives a :class:`GateResult` whose outcomes say, one plain
sentence each, what was checked and what was found.

great_expectations is imported inside the functions (it costs seconds to import). Each call
builds one ephemeral context. The record-level checks run once over all shards together:
the forgotten hashes become an expectation's `value_set`, and great-expectations walks it
many times per run, so one run instead of one per shard keeps a long ledger affordable.
The column and row-count checks run shard by shard (about 15 ms each).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from unlearn_ops.errors import StoreError, UnlearnOpsError
from unlearn_ops.params import GateParams
from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.sisa.sharding import SLICE_COLUMN

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

__all__ = [
    "ExpectationOutcome",
    "GateResult",
    "run_data_gate",
    "run_metric_gate",
    "summarise_failures",
]

# Added to the frame of all records, so that every failing row names its shard.
_SHARD_COLUMN = "shard_id"

_NOT_IN_SET = "expect_column_values_to_not_be_in_set"
_UNIQUE = "expect_column_values_to_be_unique"
_NOT_NULL = "expect_column_values_to_not_be_null"
_BETWEEN = "expect_column_values_to_be_between"
_COLUMNS = "expect_table_columns_to_match_set"
_ROW_COUNT = "expect_table_row_count_to_equal"

# Row-level results name the shard of every failing row (not only the first 20).
_RECORDS_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [_SHARD_COLUMN],
}
_FAILURES_SHOWN = 5


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict, in plain words.

    Attributes:
        expectation: the great-expectations type, e.g. "expect_column_values_to_be_unique".
        column: the column it checked; None for a table-level expectation.
        success: whether the data met it.
        observed: what was found, JSON-ready (a count, a row count, a list of columns).
        description: one plain sentence, e.g. "no forgotten record remains in shard 3".
    """

    expectation: str
    column: str | None
    success: bool
    observed: Any
    description: str


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate and the outcome of each of its expectations.

    Attributes:
        gate: "data" or "metric".
        passed: whether every expectation succeeded.
        outcomes: one per expectation (per shard, for the per-shard ones).
    """

    gate: str
    passed: bool
    outcomes: tuple[ExpectationOutcome, ...]

    def failures(self) -> list[ExpectationOutcome]:
        """The outcomes that did not succeed."""
        return [outcome for outcome in self.outcomes if not outcome.success]

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready data (for a run artifact or a ledger entry)."""
        return {
            "gate": self.gate,
            "passed": self.passed,
            "outcomes": [asdict(outcome) for outcome in self.outcomes],
        }


def run_data_gate(
    shard_tables: Mapping[int, pd.DataFrame],
    *,
    id_column: str,
    label_column: str,
    feature_columns: Sequence[str],
    num_classes: int,
    forgotten_hashes: Collection[str],
    hash_record_id: Callable[[object], str],
    expected_rows: Mapping[int, int] | None = None,
) -> GateResult:
    """Validate every shard table with great-expectations.

    Record ids are compared as text (:func:`unlearn_ops.sisa.hashing.canonical_id`), as the core
    does: the id 7.0 read from a float column is the record "7", and its keyed hash is the
    one that `forgotten.json` holds.

    Example::

        ensemble = SisaEnsemble(root, params, settings)
        columns = ensemble.columns()
        result = run_data_gate(
            {s: read_shard(ensemble.shard_path(s)) for s in range(params.sisa.shards)},
            id_column=columns.id_column,
            label_column=columns.label_column,
            feature_columns=columns.feature_columns,
            num_classes=columns.num_classes,
            forgotten_hashes=ensemble.forgotten_hashes(),
            hash_record_id=settings.hash_record_id,
        )
        if not result.passed:
            print(summarise_failures([result]))

    Args:
        shard_tables: each shard's table by shard id.
        id_column: the record id column.
        label_column: the integer class label column.
        feature_columns: the feature columns; with `id_column`, `slice_id` and
            `label_column` they are exactly the columns a shard table must have.
        num_classes: labels must lie in [0, num_classes - 1].
        forgotten_hashes: keyed hashes of every forgotten record id.
        hash_record_id: the keyed hash that made them (`Settings.hash_record_id`).
        expected_rows: when given, the row count each shard must have (same shard ids).

    Returns:
        The gate's result: four record-level outcomes over all shards, then per shard the
        column check and (with `expected_rows`) the row-count check.

    Raises:
        StoreError: no shard table was given, `expected_rows` names other shards,
            `num_classes` is below 1, or great-expectations itself failed.
    """
    if not shard_tables:
        raise _gate_error("data", "no shard table was given", "pass every shard's table")
    if num_classes < 1:
        raise _gate_error("data", f"num_classes is {num_classes}", "it must be at least 1")
    if expected_rows is not None and set(expected_rows) != set(shard_tables):
        raise _gate_error(
            "data",
            f"expected row counts are for shards {sorted(expected_rows)} but tables were "
            f"given for shards {sorted(shard_tables)}",
            "give a row count for exactly the shards given",
        )
    shard_ids = sorted(shard_tables)
    hash_column = f"{id_column}_hash"
    records = _records_frame(
        shard_tables, shard_ids, id_column, label_column, hash_column, hash_record_id
    )
    expected_columns = [id_column, SLICE_COLUMN, label_column, *feature_columns]
    highest_label = num_classes - 1

    # Public names, re-exported without an __all__ (so mypy's strict mode objects).
    from great_expectations.expectations import (  # type: ignore[attr-defined]
        ExpectColumnValuesToBeBetween,
        ExpectColumnValuesToBeUnique,
        ExpectColumnValuesToNotBeInSet,
        ExpectColumnValuesToNotBeNull,
        ExpectTableColumnsToMatchSet,
        ExpectTableRowCountToEqual,
    )

    with _translated_errors("data"):
        context = _ephemeral_context()
        records_validation = _validation_definition(
            context,
            "records",
            [
                ExpectColumnValuesToNotBeInSet(
                    column=hash_column, value_set=sorted(forgotten_hashes)
                ),
                ExpectColumnValuesToBeUnique(column=id_column),
                ExpectColumnValuesToNotBeNull(column=id_column),
                ExpectColumnValuesToBeBetween(
                    column=label_column, min_value=0, max_value=highest_label
                ),
            ],
        )
        layout_expectations: list[Expectation] = [
            ExpectTableColumnsToMatchSet(column_set=expected_columns, exact_match=True)
        ]
        if expected_rows is not None:
            layout_expectations.append(
                ExpectTableRowCountToEqual(value={"$PARAMETER": "expected_rows"})
            )
        layout_validation = _validation_definition(context, "layout", layout_expectations)

        records_run = records_validation.run(
            batch_parameters={"dataframe": records}, result_format=_RECORDS_RESULT_FORMAT
        )
        layout_runs = {
            shard_id: layout_validation.run(
                batch_parameters={"dataframe": shard_tables[shard_id]},
                expectation_parameters=(
                    None if expected_rows is None else {"expected_rows": expected_rows[shard_id]}
                ),
            )
            for shard_id in shard_ids
        }

    outcomes = _records_outcomes(records_run, shard_ids, id_column, label_column, highest_label)
    for shard_id in shard_ids:
        shard_results = _results_by_type(layout_runs[shard_id])
        outcomes.append(_columns_outcome(shard_results[_COLUMNS], shard_id))
        if expected_rows is not None:
            outcomes.append(
                _row_count_outcome(shard_results[_ROW_COUNT], shard_id, expected_rows[shard_id])
            )
    return GateResult(
        gate="data",
        passed=all(outcome.success for outcome in outcomes),
        outcomes=tuple(outcomes),
    )


def run_metric_gate(
    accuracy: float, champion_accuracy: float | None, gates: GateParams
) -> GateResult:
    """Validate held-out accuracy with great-expectations.

    The accuracy must reach `gates.min_accuracy`; with a champion, it may fall at most
    `gates.max_accuracy_drop` below the champion's. Without a champion there is no drop
    check.

    Example::

        result = run_metric_gate(0.9312, 0.9400, params.gates)
        result.passed  # True with the default gates (floor 0.8, drop at most 0.02)

    Args:
        accuracy: the new version's held-out accuracy.
        champion_accuracy: the serving version's, or None when none serves yet.
        gates: the thresholds from `params.yaml`.

    Returns:
        The gate's result: the floor outcome, then the drop outcome when there is a champion.

    Raises:
        StoreError: an accuracy is not a finite number, or great-expectations itself failed.
    """
    for name, value in (("accuracy", accuracy), ("champion accuracy", champion_accuracy)):
        # great-expectations skips NaN as missing, so a NaN accuracy would pass the floor.
        if value is not None and not math.isfinite(value):
            raise _gate_error(
                "metric",
                f"{name} is {value}, not a finite number",
                "evaluate on a non-empty held-out set",
            )
    metrics: dict[str, list[float]] = {"accuracy": [float(accuracy)]}
    drop: float | None = None
    if champion_accuracy is not None:
        # Rounded, so that 0.95 - 0.93 is a drop of 0.02, not 0.020000000000000018.
        drop = round(float(champion_accuracy) - float(accuracy), 12)
        metrics["accuracy_drop"] = [drop]

    from great_expectations.expectations import (  # type: ignore[attr-defined]
        ExpectColumnValuesToBeBetween,
    )

    with _translated_errors("metric"):
        context = _ephemeral_context()
        expectations: list[Expectation] = [
            ExpectColumnValuesToBeBetween(column="accuracy", min_value=gates.min_accuracy)
        ]
        if drop is not None:
            expectations.append(
                ExpectColumnValuesToBeBetween(
                    column="accuracy_drop", max_value=gates.max_accuracy_drop
                )
            )
        validation = _validation_definition(context, "metrics", expectations)
        run = validation.run(batch_parameters={"dataframe": pd.DataFrame(metrics)})

    results = {_column_of(result): result for result in run.results}
    floor = results["accuracy"]
    outcomes = [
        _metric_outcome(
            floor,
            observed=float(accuracy),
            passed=f"held-out accuracy {accuracy:.4f} is at least the floor "
            f"{gates.min_accuracy:.4f}",
            failed=f"held-out accuracy {accuracy:.4f} is below the floor {gates.min_accuracy:.4f}",
        )
    ]
    if drop is not None:
        outcomes.append(
            _metric_outcome(
                results["accuracy_drop"],
                observed=drop,
                passed=f"accuracy drop {drop:.4f} against the champion is within the limit "
                f"{gates.max_accuracy_drop:.4f}",
                failed=f"accuracy drop {drop:.4f} against the champion exceeds the limit "
                f"{gates.max_accuracy_drop:.4f}",
            )
        )
    return GateResult(
        gate="metric",
        passed=all(outcome.success for outcome in outcomes),
        outcomes=tuple(outcomes),
    )


def summarise_failures(results: Sequence[GateResult]) -> str:
    """One line naming each failed expectation, for a CLI error message.

    Example: "gate 'data' failed: expect_column_values_to_not_be_in_set on record_id_hash
    (2 forgotten records remain in shard 3)". At most five failures per gate are spelled
    out; the rest are counted.
    """
    parts = []
    for result in results:
        failures = result.failures()
        if not failures:
            continue
        named = [
            f"{failure.expectation}"
            f"{'' if failure.column is None else f' on {failure.column}'}"
            f" ({failure.description})"
            for failure in failures[:_FAILURES_SHOWN]
        ]
        if len(failures) > _FAILURES_SHOWN:
            named.append(f"and {len(failures) - _FAILURES_SHOWN} more")
        parts.append(f"gate {result.gate!r} failed: {'; '.join(named)}")
    return _one_line("; ".join(parts)) if parts else "no gate failed"


# --------------------------------------------------------------------- great-expectations


def _ephemeral_context() -> AbstractDataContext:
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


def _validation_definition(
    context: AbstractDataContext, name: str, expectations: Iterable[Expectation]
) -> ValidationDefinition:
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
def _translated_errors(gate: str) -> Iterator[None]:
    """Turn an exception that great-expectations raises into an unlearn-ops error."""
    from great_expectations.compatibility.pydantic import ValidationError
    from great_expectations.exceptions.exceptions import GreatExpectationsError

    try:
        yield
    except (GreatExpectationsError, ValidationError) as exc:
        raise _gate_error(
            gate,
            f"great-expectations failed ({type(exc).__name__}: {_one_line(str(exc))})",
            "check the column names and thresholds given to the gate; if they are right, "
            "report this as a bug",
        ) from exc


def _gate_error(gate: str, problem: str, hint: str) -> UnlearnOpsError:
    # A gate that cannot run is not a gate that failed (that is GateFailedError).
    return StoreError(f"{gate} gate", problem, hint)


def _results_by_type(
    run: ExpectationSuiteValidationResult,
) -> dict[str, ExpectationValidationResult]:
    # One expectation per type in each suite; results do not come back in suite order.
    return {_type_of(result): result for result in run.results}


def _type_of(result: ExpectationValidationResult) -> str:
    config = result.expectation_config
    return "" if config is None else str(config.type)


def _column_of(result: ExpectationValidationResult) -> str | None:
    config = result.expectation_config
    column = None if config is None else config.kwargs.get("column")
    return None if column is None else str(column)


def _exception_message(result: ExpectationValidationResult) -> str | None:
    """great-expectations' message when computing the expectation raised, else None.

    `exception_info` is either one record or one record per metric, keyed by metric id.
    """
    info = result.exception_info or {}
    records = [info] if "raised_exception" in info else list(info.values())
    for record in records:
        if isinstance(record, dict) and record.get("raised_exception"):
            return _one_line(str(record.get("exception_message") or "no message"))
    return None


def _could_not_run(result: ExpectationValidationResult, where: str) -> ExpectationOutcome | None:
    message = _exception_message(result)
    if message is None:
        return None
    column = _column_of(result)
    subject = "the table" if column is None else f"column {column!r}"
    return ExpectationOutcome(
        expectation=_type_of(result),
        column=column,
        success=False,
        observed=None,
        description=f"{subject} could not be checked in {where}: {message}",
    )


# ------------------------------------------------------------------------------- outcomes


def _records_frame(
    shard_tables: Mapping[int, pd.DataFrame],
    shard_ids: Sequence[int],
    id_column: str,
    label_column: str,
    hash_column: str,
    hash_record_id: Callable[[object], str],
) -> pd.DataFrame:
    """Shard, id (as text), keyed hash of the id and label of every record, in one frame.

    A shard that lacks the id or label column contributes missing values there: its
    column check fails, and its missing ids fail the not-null check.
    """
    shard_column: list[int] = []
    record_ids: list[str | None] = []
    labels: list[object] = []
    for shard_id in shard_ids:
        table = shard_tables[shard_id]
        rows = len(table)
        shard_column.extend([shard_id] * rows)
        if id_column in table.columns:
            ids = table[id_column]
            record_ids.extend(
                None if missing else canonical_id(value)
                for value, missing in zip(ids.tolist(), ids.isna().tolist(), strict=True)
            )
        else:
            record_ids.extend([None] * rows)
        labels.extend(
            table[label_column].tolist() if label_column in table.columns else [None] * rows
        )
    hashes = [None if text is None else hash_record_id(text) for text in record_ids]
    return pd.DataFrame(
        {
            _SHARD_COLUMN: pd.Series(shard_column, dtype="int64"),
            id_column: pd.Series(record_ids, dtype=object),
            hash_column: pd.Series(hashes, dtype=object),
            label_column: pd.Series(labels),
        }
    )


def _row_outcome(
    result: ExpectationValidationResult, *, passed: str, failed: Callable[[int], str]
) -> ExpectationOutcome:
    """Outcome of a row-level expectation over all shards; a failure names its shards.

    `failed` says what is wrong for a count of failing rows; where they are is added.
    """
    could_not_run = _could_not_run(result, "the shard tables")
    if could_not_run is not None:
        return could_not_run
    count = int(result.result.get("unexpected_count", 0))
    if result.success:
        return ExpectationOutcome(_type_of(result), _column_of(result), True, count, passed)
    per_shard = Counter(
        int(row[_SHARD_COLUMN]) for row in result.result.get("unexpected_index_list", [])
    )
    text = failed(count)
    if len(per_shard) == 1:
        text += f" in shard {next(iter(per_shard))}"
    elif per_shard:
        text += ": " + ", ".join(
            f"{rows} in shard {shard_id}" for shard_id, rows in sorted(per_shard.items())
        )
    return ExpectationOutcome(_type_of(result), _column_of(result), False, count, text)


def _records_outcomes(
    run: ExpectationSuiteValidationResult,
    shard_ids: Sequence[int],
    id_column: str,
    label_column: str,
    highest_label: int,
) -> list[ExpectationOutcome]:
    """The four record-level outcomes, in a fixed order."""
    if len(shard_ids) == 1:
        any_shard = all_shards = f"shard {shard_ids[0]}"
    else:
        any_shard, all_shards = (
            f"any of the {len(shard_ids)} shards",
            f"the {len(shard_ids)} shards",
        )
    by_type = _results_by_type(run)
    return [
        _row_outcome(
            by_type[_NOT_IN_SET],
            passed=f"no forgotten record remains in {any_shard}",
            failed=lambda n: f"{_count(n, 'forgotten record')} {_verb(n, 'remains', 'remain')}",
        ),
        _row_outcome(
            by_type[_UNIQUE],
            passed=f"every {id_column} is unique across {all_shards}",
            failed=lambda n: (
                f"{_count(n, 'row')} {_verb(n, 'shares its', 'share their')} {id_column} "
                "with another row"
            ),
        ),
        _row_outcome(
            by_type[_NOT_NULL],
            passed=f"every row of {all_shards} has a {id_column}",
            failed=lambda n: f"{_count(n, 'row')} {_verb(n, 'has', 'have')} no {id_column}",
        ),
        _row_outcome(
            by_type[_BETWEEN],
            passed=f"every {label_column} in {all_shards} lies in [0, {highest_label}]",
            failed=lambda n: (
                f"{_count(n, f'{label_column} value')} "
                f"{_verb(n, 'lies', 'lie')} outside [0, {highest_label}]"
            ),
        ),
    ]


def _columns_outcome(result: ExpectationValidationResult, shard_id: int) -> ExpectationOutcome:
    could_not_run = _could_not_run(result, f"shard {shard_id}")
    if could_not_run is not None:
        return could_not_run
    observed = [str(column) for column in result.result.get("observed_value", [])]
    if result.success:
        description = f"shard {shard_id} has exactly the expected columns"
    else:
        mismatched = result.result.get("details", {}).get("mismatched", {})
        problems = []
        if mismatched.get("missing"):
            problems.append(f"lacks {_names(mismatched['missing'])}")
        if mismatched.get("unexpected"):
            problems.append(f"has unexpected {_names(mismatched['unexpected'])}")
        description = f"shard {shard_id} {' and '.join(problems) or 'has other columns'}"
    return ExpectationOutcome(_COLUMNS, None, bool(result.success), observed, description)


def _row_count_outcome(
    result: ExpectationValidationResult, shard_id: int, expected: int
) -> ExpectationOutcome:
    could_not_run = _could_not_run(result, f"shard {shard_id}")
    if could_not_run is not None:
        return could_not_run
    observed = int(result.result["observed_value"])
    if result.success:
        description = f"shard {shard_id} has {_count(observed, 'row')}, as expected"
    else:
        description = f"shard {shard_id} has {_count(observed, 'row')}, expected {expected}"
    return ExpectationOutcome(_ROW_COUNT, None, bool(result.success), observed, description)


def _metric_outcome(
    result: ExpectationValidationResult, *, observed: float, passed: str, failed: str
) -> ExpectationOutcome:
    could_not_run = _could_not_run(result, "the metrics")
    if could_not_run is not None:
        return could_not_run
    success = bool(result.success)
    return ExpectationOutcome(
        _type_of(result), _column_of(result), success, observed, passed if success else failed
    )


def _names(columns: Iterable[object]) -> str:
    names = [repr(str(column)) for column in columns]
    return f"column {names[0]}" if len(names) == 1 else f"columns {', '.join(names)}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _verb(number: int, singular: str, plural: str) -> str:
    return singular if number == 1 else plural


def _one_line(text: str) -> str:
    return " ".join(text.split())

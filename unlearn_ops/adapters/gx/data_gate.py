"""The data gate, checked with great-expectations: the shard tables after a forget.

It validates every shard table: no forgotten record remains (compared by keyed hash, since
the ledger keeps only hashes), record ids are present and unique across all shards, labels
are valid classes, and each shard has exactly its columns and, when known, its row count.

Each call builds one ephemeral context. The record-level checks run once over all shards
together: the forgotten hashes become an expectation's `value_set`, and great-expectations
walks it many times per run, so one run instead of one per shard keeps a long ledger
affordable. The column check runs once per distinct column list (it reads nothing else;
each run also serialises the list, 787 names on MNIST, about 0.15 s), so once in all
when the shards agree; with expected row counts, the layout runs shard by shard.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from unlearn_ops.adapters.gx.context import (
    column_of,
    could_not_run,
    count,
    gate_error,
    results_by_type,
    type_of,
    validating,
    validation_definition,
    verb,
)
from unlearn_ops.serving.gates import DataGateEvidence, ExpectationOutcome, GateResult
from unlearn_ops.sisa.hashing import canonical_id
from unlearn_ops.sisa.sharding import SLICE_COLUMN

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation import Expectation

__all__ = ["run_data_gate"]

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


def run_data_gate(evidence: DataGateEvidence) -> GateResult:
    """Validate every shard table with great-expectations.

    Record ids are compared as text (:func:`unlearn_ops.sisa.hashing.canonical_id`), as the core
    does: the id 7.0 read from a float column is the record "7", and its keyed hash is the
    one that `forgotten.json` holds.

    Example::

        ensemble = SisaEnsemble(root, params, settings)
        columns = ensemble.columns()
        result = run_data_gate(
            DataGateEvidence(
                {s: read_shard(ensemble.shard_path(s)) for s in range(params.sisa.shards)},
                columns.id_column,
                columns.label_column,
                columns.feature_columns,
                columns.num_classes,
                ensemble.forgotten_hashes(),
                settings.hash_record_id,
            )
        )
        if not result.passed:
            print(summarise_failures([result]))

    Args:
        evidence: the shard tables and what they must (not) hold
            (:class:`~unlearn_ops.serving.gates.DataGateEvidence`).

    Returns:
        The gate's result: four record-level outcomes over all shards, then per shard the
        column check and (with `expected_rows`) the row-count check.

    Raises:
        StoreError: no shard table was given, `expected_rows` names other shards,
            `num_classes` is below 1, or great-expectations itself failed.
    """
    shard_tables, id_column, label_column = (
        evidence.shard_tables,
        evidence.id_column,
        evidence.label_column,
    )
    feature_columns, num_classes = evidence.feature_columns, evidence.num_classes
    hash_record_id, expected_rows = evidence.hash_record_id, evidence.expected_rows
    forgotten_hashes = evidence.forgotten_hashes
    if not shard_tables:
        raise gate_error("data", "no shard table was given", "pass every shard's table")
    if num_classes < 1:
        raise gate_error("data", f"num_classes is {num_classes}", "it must be at least 1")
    if expected_rows is not None and set(expected_rows) != set(shard_tables):
        raise gate_error(
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

    with validating("data") as context:
        records_validation = validation_definition(
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
        layout_validation = validation_definition(context, "layout", layout_expectations)

        records_run = records_validation.run(
            batch_parameters={"dataframe": records}, result_format=_RECORDS_RESULT_FORMAT
        )
        if expected_rows is None:
            # The column check reads a table's columns and nothing else: one run per
            # distinct column list (a single one when the shards are as they should be)
            # answers for every shard that has it.
            by_columns: dict[tuple[object, ...], list[int]] = {}
            for shard_id in shard_ids:
                by_columns.setdefault(tuple(shard_tables[shard_id].columns), []).append(shard_id)
            layout_runs = {}
            for members in by_columns.values():
                run = layout_validation.run(
                    batch_parameters={"dataframe": shard_tables[members[0]]}
                )
                layout_runs.update(dict.fromkeys(members, run))
        else:
            layout_runs = {
                shard_id: layout_validation.run(
                    batch_parameters={"dataframe": shard_tables[shard_id]},
                    expectation_parameters={"expected_rows": expected_rows[shard_id]},
                )
                for shard_id in shard_ids
            }

    outcomes = _records_outcomes(records_run, shard_ids, id_column, label_column, highest_label)
    for shard_id in shard_ids:
        shard_results = results_by_type(layout_runs[shard_id])
        outcomes.append(_columns_outcome(shard_results[_COLUMNS], shard_id))
        if expected_rows is not None:
            outcomes.append(
                _row_count_outcome(shard_results[_ROW_COUNT], shard_id, expected_rows[shard_id])
            )
    return GateResult.from_outcomes("data", outcomes)


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
    unrunnable = could_not_run(result, "the shard tables")
    if unrunnable is not None:
        return unrunnable
    failing = int(result.result.get("unexpected_count", 0))
    if result.success:
        return ExpectationOutcome(type_of(result), column_of(result), True, failing, passed)
    per_shard = Counter(
        int(row[_SHARD_COLUMN]) for row in result.result.get("unexpected_index_list", [])
    )
    text = failed(failing)
    if len(per_shard) == 1:
        text += f" in shard {next(iter(per_shard))}"
    elif per_shard:
        text += ": " + ", ".join(
            f"{rows} in shard {shard_id}" for shard_id, rows in sorted(per_shard.items())
        )
    return ExpectationOutcome(type_of(result), column_of(result), False, failing, text)


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
    by_type = results_by_type(run)
    return [
        _row_outcome(
            by_type[_NOT_IN_SET],
            passed=f"no forgotten record remains in {any_shard}",
            failed=_failing("forgotten record", "remains", "remain"),
        ),
        _row_outcome(
            by_type[_UNIQUE],
            passed=f"every {id_column} is unique across {all_shards}",
            failed=_failing("row", "shares its", "share their", f" {id_column} with another row"),
        ),
        _row_outcome(
            by_type[_NOT_NULL],
            passed=f"every row of {all_shards} has a {id_column}",
            failed=_failing("row", "has", "have", f" no {id_column}"),
        ),
        _row_outcome(
            by_type[_BETWEEN],
            passed=f"every {label_column} in {all_shards} lies in [0, {highest_label}]",
            failed=_failing(
                f"{label_column} value", "lies", "lie", f" outside [0, {highest_label}]"
            ),
        ),
    ]


def _failing(noun: str, singular: str, plural: str, rest: str = "") -> Callable[[int], str]:
    """What is wrong with `n` failing rows: "1 row has no id", "2 rows have no id"."""
    return lambda n: f"{count(n, noun)} {verb(n, singular, plural)}{rest}"


def _columns_outcome(result: ExpectationValidationResult, shard_id: int) -> ExpectationOutcome:
    unrunnable = could_not_run(result, f"shard {shard_id}")
    if unrunnable is not None:
        return unrunnable
    columns = [str(column) for column in result.result.get("observed_value", [])]
    observed: int | list[str] = columns
    if result.success:
        # The columns found are the expected set, the same for every shard: the count
        # says it; listing them per shard made most of each version's gate results
        # (8 x 67 names on digits, 8 x 787 on MNIST) (issue 15).
        observed = len(columns)
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
    unrunnable = could_not_run(result, f"shard {shard_id}")
    if unrunnable is not None:
        return unrunnable
    observed = int(result.result["observed_value"])
    if result.success:
        description = f"shard {shard_id} has {count(observed, 'row')}, as expected"
    else:
        description = f"shard {shard_id} has {count(observed, 'row')}, expected {expected}"
    return ExpectationOutcome(_ROW_COUNT, None, bool(result.success), observed, description)


def _names(columns: Iterable[object]) -> str:
    names = [repr(str(column)) for column in columns]
    return f"column {names[0]}" if len(names) == 1 else f"columns {', '.join(names)}"

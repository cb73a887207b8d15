"""Gate results, and the metric comparison of a candidate with the champion it would replace.

A gate gives a :class:`GateResult`: its verdict and one plain sentence per expectation.
:class:`GateRunner` is the seam that runs the gates (great-expectations in
:mod:`unlearn_ops.adapters.gx`, a fake in :mod:`unlearn_ops.testing.gates`).

The metric comparison respects the uncertainty of its own measurement (issue 11, finding
4): on 36 held-out records one changed prediction moves accuracy by 2.8 points, more than
the default limit of 2. Candidate and champion are therefore compared record by record on
the *same* held-out records, and only the records on which they disagree carry
information: `worse` (the champion was right, the candidate wrong) and `better`. Under "no
difference", `worse` is binomial(worse + better, 1/2): the McNemar test. Its exact
conditional form is too conservative on few records (4 of 4 changes against the candidate
give p = 0.0625); the mid-p version keeps the level and is what Fagerland, Lydersen and
Laake (BMC Med. Res. Methodol. 13:91, 2013) recommend, so it is used here.

The rule: the drop fails the gate when it exceeds `gates.max_accuracy_drop` **and** is
significant at `gates.significance` (one-sided mid-p below it; equivalently, the lower
bound of the drop's (1 - 2 * significance) mid-p interval is above zero). Given how many
records changed, that is one number, the *tolerance*: the largest drop that passes. On a
large held-out set the tolerance is the limit itself, as before; on a small one it is what
chance alone can produce. The interval is reported in the gate's sentence.

Why this module is long: the metric gate's rule and the statistics it rests on (the paired
mid-p McNemar test, its interval, the smallest drop a held-out set can show) are one
argument, read together with the results and the protocol they produce.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from unlearn_ops.errors import UnlearnOpsError
from unlearn_ops.params import GateParams

if TYPE_CHECKING:
    import pandas as pd

    from unlearn_ops.params import Params
    from unlearn_ops.privacy.fairness import FairnessEvidence
    from unlearn_ops.sisa.datasets import Dataset

__all__ = [
    "AccuracyDrop",
    "DataGateEvidence",
    "ExpectationOutcome",
    "GateResult",
    "GateRunner",
    "HeldOutCorrectness",
    "compare_with_champion",
    "describe_floor",
    "held_out_correctness",
    "holdout_size_warning",
    "smallest_significant_drop",
    "summarise_failures",
    "workspace_holdout_warning",
]

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
        gate: "data", "metric" or "fairness".
        passed: whether every expectation succeeded.
        outcomes: one per expectation (per shard, for the per-shard ones).
    """

    gate: str
    passed: bool
    outcomes: tuple[ExpectationOutcome, ...]

    @classmethod
    def from_outcomes(cls, gate: str, outcomes: Iterable[ExpectationOutcome]) -> GateResult:
        """The result of a gate whose expectations had these outcomes: passed if all did."""
        kept = tuple(outcomes)
        return cls(gate, all(outcome.success for outcome in kept), kept)

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
    return " ".join("; ".join(parts).split()) if parts else "no gate failed"


@dataclass(frozen=True)
class DataGateEvidence:
    """What the data gate validates: the shard tables and what they must (not) hold.

    Attributes:
        shard_tables: each shard's table by shard id.
        id_column: the record id column.
        label_column: the integer class label column.
        feature_columns: the feature columns; with `id_column`, `slice_id` and
            `label_column` they are exactly the columns a shard table must have.
        num_classes: labels must lie in [0, num_classes - 1].
        forgotten_hashes: keyed hashes of every forgotten record id.
        hash_record_id: the keyed hash that made them (`Settings.hash_record_id`).
        expected_rows: when given, the row count each shard must have (same shard ids).
    """

    shard_tables: Mapping[int, pd.DataFrame]
    id_column: str
    label_column: str
    feature_columns: Sequence[str]
    num_classes: int
    forgotten_hashes: Collection[str]
    hash_record_id: Callable[[object], str]
    expected_rows: Mapping[int, int] | None = None


class GateRunner(Protocol):
    """Runs the promotion gates; each call returns one :class:`GateResult`."""

    def run_data_gate(self, evidence: DataGateEvidence) -> GateResult:
        """No forgotten record, ids present and unique, valid labels, the expected layout."""
        ...

    def run_metric_gate(self, correctness: HeldOutCorrectness, gates: GateParams) -> GateResult:
        """The accuracy floor, and the drop against the champion (see the module docstring)."""
        ...

    def run_fairness_gate(self, evidence: FairnessEvidence, gates: GateParams) -> GateResult:
        """Class support, per-class recall, per-group accuracy (see privacy.fairness)."""
        ...


# ------------------------------------------------------------------ held-out correctness


@dataclass(frozen=True)
class HeldOutCorrectness:
    """Which held-out records the candidate, and the champion, predict right.

    Attributes:
        record_ids: the held-out records (ids as text), in one order for both.
        candidate: per record, whether the candidate version predicts its label.
        champion: the same for the serving version, on the same records; None when no
            version serves yet.
    """

    record_ids: tuple[str, ...]
    candidate: tuple[bool, ...]
    champion: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        lengths = {len(self.record_ids), len(self.candidate)}
        if self.champion is not None:
            lengths.add(len(self.champion))
        if len(lengths) != 1:
            raise ValueError("record_ids, candidate and champion must have one length each")

    @property
    def accuracy(self) -> float:
        """The candidate's held-out accuracy (NaN without records)."""
        return sum(self.candidate) / len(self.candidate) if self.candidate else math.nan


def held_out_correctness(
    holdout: pd.DataFrame,
    *,
    id_column: str,
    label_column: str,
    feature_columns: Sequence[str],
    predict_candidate: Callable[[pd.DataFrame], Any],
    predict_champion: Callable[[pd.DataFrame], Any] | None = None,
) -> HeldOutCorrectness:
    """Compare each version's predicted class with the label of every held-out record.

    Both predictors get the same frame of feature columns (as stored: float32) and return
    one class per row, so the comparison is paired record by record.

    Example::

        served = registry.load_pyfunc("champion")
        correctness = held_out_correctness(
            ensemble.read_holdout(),
            id_column="record_id", label_column="label", feature_columns=("f0", "f1"),
            predict_candidate=lambda frame: ensemble.predict(frame.to_numpy()),
            predict_champion=lambda frame: served.predict(frame)["prediction"],
        )
    """
    import numpy as np

    from unlearn_ops.sisa.hashing import canonical_id

    features = holdout[list(feature_columns)]
    labels = holdout[label_column].to_numpy(dtype=np.int64)

    def correct(predict: Callable[[pd.DataFrame], Any]) -> tuple[bool, ...]:
        predicted = np.asarray(predict(features)).reshape(-1)
        if predicted.shape != labels.shape:
            raise ValueError(f"{predicted.shape[0]} predictions for {len(labels)} records")
        return tuple(bool(hit) for hit in predicted.astype(np.int64) == labels)

    return HeldOutCorrectness(
        record_ids=tuple(canonical_id(value) for value in holdout[id_column].tolist()),
        candidate=correct(predict_candidate),
        champion=None if predict_champion is None else correct(predict_champion),
    )


# ---------------------------------------------------------------------- the comparison


@dataclass(frozen=True)
class AccuracyDrop:
    """How much worse the candidate is than the champion, and whether chance explains it.

    Attributes:
        records: held-out records compared (the same for both versions).
        worse: records the champion predicts right and the candidate wrong.
        better: records the candidate predicts right and the champion wrong.
        low: lower bound of the drop's (1 - 2 * significance) mid-p interval.
        high: its upper bound.
        p_value: one-sided mid-p of "the candidate is no worse".
        limit: `gates.max_accuracy_drop`.
        significance: `gates.significance`.
        tolerance: the largest drop that passes, given how many records changed.
    """

    records: int
    worse: int
    better: int
    low: float
    high: float
    p_value: float
    limit: float
    significance: float
    tolerance: float

    @property
    def drop(self) -> float:
        """Champion's accuracy minus the candidate's, on the same records."""
        return (self.worse - self.better) / self.records

    @property
    def passed(self) -> bool:
        """Within the limit, or not significant (the rule of the module docstring)."""
        return self.drop <= self.tolerance

    def describe(self, passed: bool) -> str:
        """The gate's sentence for this drop, given the verdict."""
        measured = (
            f"accuracy drop {self.drop:.4f} against the champion on the same "
            f"{self.records} held-out records ({self.worse} worse, {self.better} better; "
            f"{1 - 2 * self.significance:.0%} interval {self.low:.4f} to {self.high:.4f}, "
            f"mid-p {self.p_value:.3g})"
        )
        if not passed:
            return (
                f"{measured} exceeds the limit {self.limit:.4f} and is significant at "
                f"level {self.significance:g}"
            )
        if self.drop <= self.limit:
            return f"{measured} is within the limit {self.limit:.4f}"
        return (
            f"{measured} exceeds the limit {self.limit:.4f} but not significantly: chance "
            f"alone explains drops up to {self.tolerance:.4f} here (level {self.significance:g})"
        )


def compare_with_champion(correctness: HeldOutCorrectness, gates: GateParams) -> AccuracyDrop:
    """The paired comparison of candidate and champion (see the module docstring).

    Raises:
        ValueError: there is no champion in `correctness`, or no record.
    """
    if correctness.champion is None or not correctness.record_ids:
        raise ValueError("a comparison needs the champion's correctness on at least one record")
    pairs = list(zip(correctness.champion, correctness.candidate, strict=True))
    worse = sum(1 for champion, candidate in pairs if champion and not candidate)
    better = sum(1 for champion, candidate in pairs if candidate and not champion)
    records, changed, alpha = len(pairs), worse + better, gates.significance
    if changed == 0:
        low = high = 0.5
    else:
        low = 0.0 if worse == 0 else _solve(lambda p: _upper_mid_p(worse, changed, p), alpha)
        high = 1.0 if worse == changed else _solve(lambda p: _lower_mid_p(worse, changed, p), alpha)
    # The largest count of `worse` that is not significant: mid-p only falls as it grows.
    below, above = 0, changed + 1
    while above - below > 1:
        middle = (below + above) // 2
        below, above = (
            (middle, above) if _upper_mid_p(middle, changed, 0.5) >= alpha else (below, middle)
        )
    chance = (2 * below - changed) / records
    return AccuracyDrop(
        records=records,
        worse=worse,
        better=better,
        low=changed * (2 * low - 1) / records,
        high=changed * (2 * high - 1) / records,
        p_value=_upper_mid_p(worse, changed, 0.5),
        limit=gates.max_accuracy_drop,
        significance=alpha,
        tolerance=max(gates.max_accuracy_drop, chance),
    )


def describe_floor(accuracy: float, gates: GateParams, passed: bool) -> str:
    """The gate's sentence for the accuracy floor."""
    if passed:
        return f"held-out accuracy {accuracy:.4f} is at least the floor {gates.min_accuracy:.4f}"
    return (
        f"held-out accuracy {accuracy:.4f} is below the floor {gates.min_accuracy:.4f} "
        "(gates.min_accuracy in params.yaml)"
    )


def smallest_significant_drop(records: int, significance: float) -> float:
    """The smallest accuracy drop the gate can tell from chance on `records` records.

    It needs k records changed against the candidate and none for it, with mid-p
    0.5 ** (k + 1) below `significance`; the drop is then k / records.
    """
    changed = math.floor(math.log2(1 / significance))  # 0.5 ** (k + 1) < significance
    return changed / records if records else math.inf


def holdout_size_warning(records: int, gates: GateParams) -> str | None:
    """A warning when `records` held-out records cannot enforce `gates.max_accuracy_drop`.

    Returns:
        None when a drop just over the limit can be significant; otherwise a sentence
        that says what the gate can tell apart and what to change.
    """
    smallest = smallest_significant_drop(records, gates.significance)
    if smallest <= gates.max_accuracy_drop:
        return None
    changed = round(smallest * records)
    needed = math.ceil(changed / gates.max_accuracy_drop) if gates.max_accuracy_drop else None
    return (
        f"the held-out set has {records} records: one changed prediction moves accuracy by "
        f"{1 / records:.4f} and the metric gate can tell only drops of {smallest:.4f} "
        f"({changed} records) or more from chance at gates.significance "
        f"{gates.significance:g}, so gates.max_accuracy_drop {gates.max_accuracy_drop:g} "
        "is not enforced below that; "
        + (f"about {needed} held-out records are needed: " if needed else "")
        + "raise dataset.holdout_fraction or gates.max_accuracy_drop, or use more data"
    )


def workspace_holdout_warning(
    params: Params, base_dir: Path | None = None, dataset: Dataset | None = None
) -> str | None:
    """:func:`holdout_size_warning` for the dataset that `params` names.

    Args:
        params: the workspace's params (dataset, holdout fraction, gates).
        base_dir: where a relative dataset path is read from.
        dataset: the dataset, when the caller has read it already (it is read here if not).

    Returns None when the dataset cannot be read: `train` reports that with its own error.
    """
    from unlearn_ops.sisa.datasets import load_dataset, split_holdout

    spec = params.dataset
    if dataset is None:
        try:
            dataset = load_dataset(
                spec.source,
                id_column=spec.id_column,
                label_column=spec.label_column,
                feature_columns=spec.feature_columns,
                base_dir=base_dir,
                sensitive_column=spec.sensitive_column,
            )
        except UnlearnOpsError:
            return None
    _, holdout = split_holdout(dataset, spec.holdout_fraction, f"{params.sisa.salt}:{params.seed}")
    return holdout_size_warning(len(holdout), params.gates)


# ------------------------------------------------------------------------- binomial tails


def _log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


def _upper_mid_p(k: int, n: int, p: float) -> float:
    """P(X > k) + P(X = k) / 2 for X ~ binomial(n, p); rises with p."""
    tail = sum(math.exp(_log_pmf(i, n, p)) for i in range(k + 1, n + 1))
    return min(1.0, tail + 0.5 * math.exp(_log_pmf(k, n, p)))


def _lower_mid_p(k: int, n: int, p: float) -> float:
    """P(X < k) + P(X = k) / 2 for X ~ binomial(n, p); falls with p."""
    tail = sum(math.exp(_log_pmf(i, n, p)) for i in range(k))
    return min(1.0, tail + 0.5 * math.exp(_log_pmf(k, n, p)))


def _solve(tail: Callable[[float], float], target: float) -> float:
    """The p in [0, 1] where the monotone `tail(p)` crosses `target` (bisection)."""
    rising = tail(1.0) > tail(0.0)
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if (tail(middle) < target) == rising:
            low = middle
        else:
            high = middle
    return (low + high) / 2

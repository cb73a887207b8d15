"""The fairness gate's core: per-class recall and per-group accuracy against the parent.

Forgetting must not turn a model against a class or a group (issue 12, item 4). The new
version and its parent (the champion) predict the same held-out records; each *cell* (a
class, or a group of `dataset.sensitive_column`) is then compared on its own records, as
the metric gate compares the whole set (:mod:`unlearn_ops.serving.gates`): a class's
recall is the accuracy on the records of that class, and only the records on which the two
versions disagree carry information, so the drop is judged by the one-sided mid-p McNemar
test on that cell's records. A cell fails when its drop exceeds its limit
(`gates.fairness.max_class_recall_drop`, `max_group_accuracy_drop`) **and** is significant.

Many cells are tested at once, so the level is Bonferroni-corrected: each gated cell is
tested at `gates.significance / m`, m the number of gated cells; with ten classes and the
default 0.05, a cell needs a drop that chance would give less than once in 200 gates.
A group with fewer held-out records than `gates.fairness.min_group_size` is reported (its
accuracy, the champion's) but not gated: on so few records the comparison says little, and
one person's records would decide it. Without a champion every cell is reported only.

A class can also vanish: when every record of a label is forgotten, no held-out record is
left to measure it on. The gate therefore also checks that every class the data holds
keeps training records (a class without any cannot be predicted by the new version). The
classes the data holds are those with records now, plus, for a label of
`0..num_classes-1` with none left, whether the dataset's source ever had it (read only
then; a file whose labels skip a value is not failed for the gap).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from unlearn_ops.serving.gates import AccuracyDrop, HeldOutCorrectness, compare_with_champion

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from unlearn_ops.params import GateParams, Params

__all__ = [
    "CLASS_COLUMN",
    "GROUP_COLUMN",
    "FairnessCell",
    "FairnessEvidence",
    "assess_cells",
    "collect_fairness_evidence",
    "describe_sensitive_column",
    "describe_support",
    "fairness_frame",
    "missing_classes",
    "read_source_classes",
]

#: Columns of the per-record frame the gate validates.
CLASS_COLUMN = "class"
GROUP_COLUMN = "group"
CORRECT_COLUMN = "correct"
CHAMPION_COLUMN = "champion_correct"
DROP_COLUMN = "drop"


@dataclass(frozen=True)
class FairnessEvidence:
    """What the fairness gate judges: the held-out records, per record, and class support.

    Attributes:
        correctness: per held-out record, whether the candidate (and the champion) is right.
        labels: each held-out record's class, in the same order.
        groups: each held-out record's group (text), or None without a sensitive column.
        sensitive_column: `dataset.sensitive_column` (None when not set). Set while
            `groups` is None, it means the held-out table lacks the column: a failure.
        training_classes: the classes of the new version's training records, with counts.
        expected_classes: the classes the data holds (see the module docstring).
    """

    correctness: HeldOutCorrectness
    labels: tuple[int, ...]
    groups: tuple[str, ...] | None = None
    sensitive_column: str | None = None
    training_classes: Mapping[int, int] = field(default_factory=dict)
    expected_classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        records = len(self.correctness.record_ids)
        if len(self.labels) != records or (self.groups is not None and len(self.groups) != records):
            raise ValueError("labels and groups need one value per held-out record")


@dataclass(frozen=True)
class FairnessCell:
    """One class or group: its records, the two versions' accuracy on them, the verdict.

    Attributes:
        kind: "class" (recall) or "group" (accuracy).
        value: the class label, or the group's name.
        records: held-out records in the cell.
        accuracy: the candidate's accuracy on them (its recall, for a class).
        champion_accuracy: the champion's, on the same records (None without one).
        comparison: the paired comparison, for a gated cell; None when only reported.
        reason: why a cell is only reported (no champion, too small).
    """

    kind: Literal["class", "group"]
    value: int | str
    records: int
    accuracy: float
    champion_accuracy: float | None
    comparison: AccuracyDrop | None
    reason: str = ""

    @property
    def column(self) -> str:
        """The frame column that selects the cell's records."""
        return CLASS_COLUMN if self.kind == "class" else GROUP_COLUMN

    @property
    def gated(self) -> bool:
        """Whether the cell's drop can fail the gate."""
        return self.comparison is not None

    @property
    def passed(self) -> bool:
        """Reported cells pass; gated ones pass within their tolerance."""
        return self.comparison is None or self.comparison.passed

    @property
    def label(self) -> str:
        """ "class 3", "group 'F'"."""
        return f"class {self.value}" if self.kind == "class" else f"group {self.value!r}"

    def observed(self) -> dict[str, Any]:
        """JSON-ready numbers for the gate's outcome."""
        measure = "recall" if self.kind == "class" else "accuracy"
        found: dict[str, Any] = {
            self.kind: self.value,
            "records": self.records,
            measure: round(self.accuracy, 6),
        }
        if self.champion_accuracy is not None:
            found[f"champion_{measure}"] = round(self.champion_accuracy, 6)
        if self.comparison is not None:
            found["drop"] = round(self.comparison.drop, 6)
            found["tolerance"] = round(self.comparison.tolerance, 6)
            found["p_value"] = float(f"{self.comparison.p_value:.4g}")
        return found

    def describe(self, passed: bool) -> str:
        """The gate's sentence for this cell, given the verdict."""
        measure = "recall" if self.kind == "class" else "accuracy"
        if self.champion_accuracy is None:
            found = f"{measure} {self.accuracy:.4f} on {self.records} held-out records"
        else:
            found = (
                f"{measure} {self.accuracy:.4f} against the champion's "
                f"{self.champion_accuracy:.4f} on the same {self.records} held-out records"
            )
        drop = self.comparison
        if drop is None:
            return f"{self.label}: {found}; reported, not gated: {self.reason}"
        measured = (
            f"{self.label}: {measure} drop {drop.drop:.4f} ({found}; {drop.worse} worse, "
            f"{drop.better} better; mid-p {drop.p_value:.3g})"
        )
        if not passed:
            return (
                f"{measured} exceeds the limit {drop.limit:.4f} and is significant at level "
                f"{drop.significance:.3g}"
            )
        if drop.drop <= drop.limit:
            return f"{measured} is within the limit {drop.limit:.4f}"
        return (
            f"{measured} exceeds the limit {drop.limit:.4f} but not significantly: chance "
            f"alone explains drops up to {drop.tolerance:.4f} here (level {drop.significance:.3g})"
        )


def assess_cells(evidence: FairnessEvidence, gates: GateParams) -> list[FairnessCell]:
    """Every class with held-out records, then every group, each compared or reported.

    Classes come in label order, groups in name order.
    """
    fairness = gates.fairness
    correctness = evidence.correctness
    has_champion = correctness.champion is not None
    selections: list[tuple[Literal["class", "group"], int | str, list[int], float, str]] = []
    for label in sorted(set(evidence.labels)):
        rows = [i for i, value in enumerate(evidence.labels) if value == label]
        selections.append(("class", label, rows, fairness.max_class_recall_drop, ""))
    for group in sorted(set(evidence.groups or ())):
        rows = [i for i, value in enumerate(evidence.groups or ()) if value == group]
        small = len(rows) < fairness.min_group_size
        reason = (
            f"fewer than gates.fairness.min_group_size ({fairness.min_group_size}) records"
            if small
            else ""
        )
        selections.append(("group", group, rows, fairness.max_group_accuracy_drop, reason))
    if not has_champion:
        selections = [
            (k, v, r, limit, "no champion to compare with") for k, v, r, limit, _ in selections
        ]
    gated = sum(1 for *_, reason in selections if not reason)
    # Bonferroni over the gated cells (module docstring): each is one of `gated` tests.
    level = gates.significance / max(gated, 1)
    cells = []
    for kind, value, rows, limit, reason in selections:
        part = HeldOutCorrectness(
            tuple(correctness.record_ids[i] for i in rows),
            tuple(correctness.candidate[i] for i in rows),
            None if correctness.champion is None else tuple(correctness.champion[i] for i in rows),
        )
        comparison = None
        if not reason:
            cell_gates = gates.model_copy(
                update={"max_accuracy_drop": limit, "significance": level}
            )
            comparison = compare_with_champion(part, cell_gates)
        champion = part.champion
        cells.append(
            FairnessCell(
                kind,
                value,
                len(rows),
                part.accuracy,
                None if champion is None else sum(champion) / len(champion),
                comparison,
                reason,
            )
        )
    return cells


def missing_classes(evidence: FairnessEvidence) -> list[int]:
    """The classes the data holds that no training record of the new version has."""
    present = {label for label, count in evidence.training_classes.items() if count > 0}
    return [label for label in evidence.expected_classes if label not in present]


def describe_support(missing: Sequence[int], expected: int) -> str:
    """The gate's sentence for the class-support check."""
    if not missing:
        return f"every class of the data ({expected}) keeps training records"
    named = ", ".join(map(str, missing))
    noun = "class" if len(missing) == 1 else "classes"
    return (
        f"{noun} {named}: no training record left (all forgotten), so the new version "
        "cannot predict it; the forget wipes the class out"
    )


def describe_sensitive_column(column: str, exists: bool) -> str:
    """The gate's sentence for the held-out table's sensitive column."""
    if exists:
        return f"the held-out records carry the sensitive column {column!r}"
    return (
        f"the held-out table has no column {column!r} (dataset.sensitive_column): it was "
        "prepared before the column was named; prepare the data again (`unlearn-ops prepare`)"
    )


def fairness_frame(evidence: FairnessEvidence) -> pd.DataFrame:
    """The per-record frame: id, class, group (if any), correct, and with a champion its
    correctness and the drop (champion's correctness minus the candidate's: -1, 0 or 1)."""
    import numpy as np
    import pandas as pd

    correctness = evidence.correctness
    frame = pd.DataFrame(
        {
            "record_id": pd.Series(correctness.record_ids, dtype=object),
            CLASS_COLUMN: np.asarray(evidence.labels, dtype=np.int64),
        }
    )
    if evidence.groups is not None:
        frame[GROUP_COLUMN] = pd.Series(evidence.groups, dtype=object)
    frame[CORRECT_COLUMN] = np.asarray(correctness.candidate, dtype=np.int64)
    if correctness.champion is not None:
        frame[CHAMPION_COLUMN] = np.asarray(correctness.champion, dtype=np.int64)
        frame[DROP_COLUMN] = frame[CHAMPION_COLUMN] - frame[CORRECT_COLUMN]
    return frame


def collect_fairness_evidence(
    holdout: pd.DataFrame,
    correctness: HeldOutCorrectness,
    *,
    label_column: str,
    num_classes: int,
    training_labels: Sequence[int],
    sensitive_column: str | None = None,
    source_classes: Callable[[], Collection[int] | None] = lambda: None,
) -> FairnessEvidence:
    """The evidence for the gate, from the held-out table the correctness was measured on.

    Args:
        holdout: the held-out table, in the order of `correctness`.
        correctness: per record, whether each version predicts its label.
        label_column: the label column of `holdout`.
        num_classes: the label space of the workspace (0..num_classes-1).
        training_labels: the label of every training record of the new version.
        sensitive_column: `dataset.sensitive_column`, if set.
        source_classes: the classes of the dataset's source; called only when a label of
            the label space has no record left (None: the source cannot be read).
    """
    from collections import Counter

    labels = tuple(int(label) for label in holdout[label_column].tolist())
    groups = None
    if sensitive_column is not None and sensitive_column in holdout.columns:
        from unlearn_ops.sisa.datasets import group_names

        groups = tuple(group_names(holdout[sensitive_column]).tolist())
    training = Counter(int(label) for label in training_labels)
    present = set(training) | set(labels)
    absent = [label for label in range(num_classes) if label not in present]
    expected = set(training)
    if absent:
        # A label with no record left: it counts only if the source ever had it.
        known = source_classes()
        expected |= {label for label in absent if known is not None and label in known}
    expected |= {label for label in labels if label in range(num_classes)}
    return FairnessEvidence(
        correctness=correctness,
        labels=labels,
        groups=groups,
        sensitive_column=sensitive_column,
        training_classes=dict(sorted(training.items())),
        expected_classes=tuple(sorted(expected)),
    )


def read_source_classes(params: Params, base_dir: Path | None = None) -> set[int] | None:
    """The labels of the dataset's source as `params` names it (forgotten records included:
    only which classes exist is kept). None when the source cannot be read."""
    from pathlib import Path

    from unlearn_ops.errors import UnlearnOpsError
    from unlearn_ops.sisa.datasets import BUILTIN_DATASETS, read_table

    spec = params.dataset
    try:
        if spec.source in BUILTIN_DATASETS:
            return {int(label) for label in BUILTIN_DATASETS[spec.source]().labels()}
        path = Path(spec.source)
        table = read_table(path if base_dir is None or path.is_absolute() else base_dir / path)
    except UnlearnOpsError:
        return None
    if spec.label_column not in table.columns:
        return None
    return {int(label) for label in table[spec.label_column].dropna().tolist()}

"""Planning a forget: which shards retrain, from which stage, and at what share of the cost.

Pure functions over slice counts; no files, no torch. The cost measure is the number of
examples the SISA schedule runs through a model (stage j of a shard trains on slices
0..j for the same number of epochs), which is what wall time follows once fixed costs
are small (Bourtoule et al. 2021, section V-A).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["RetrainingPlan", "ShardPlan", "plan_retraining", "schedule_cost"]


def schedule_cost(slice_counts: Sequence[int], first_stage: int = 0) -> int:
    """Examples per epoch of stages `first_stage`..R-1 of one shard (stage j sees slices 0..j)."""
    total = 0
    running = sum(slice_counts[:first_stage])
    for count in slice_counts[first_stage:]:
        running += count
        total += running
    return total


@dataclass(frozen=True)
class ShardPlan:
    """One affected shard: forgotten records, first stage to retrain, and the cost."""

    shard_id: int
    num_records: int
    first_stage: int
    stages: int
    cost: int
    full_cost: int

    @property
    def stages_to_train(self) -> int:
        """Number of stages that run again."""
        return self.stages - self.first_stage


@dataclass(frozen=True)
class RetrainingPlan:
    """What a forget will do, before it does it.

    Attributes:
        shards: the affected shards, by shard id.
        ensemble_cost: examples per epoch of training the whole ensemble from scratch on the
            data that remains after the forget.
        holdout_records: records to forget that sit in the held-out split (no retraining).
        already_forgotten: ids forgotten before (a no-op for them).
    """

    shards: tuple[ShardPlan, ...]
    ensemble_cost: int
    holdout_records: int = 0
    already_forgotten: tuple[str, ...] = field(default_factory=tuple)

    @property
    def cost(self) -> int:
        """Examples per epoch that retraining the affected stages runs."""
        return sum(shard.cost for shard in self.shards)

    @property
    def fraction(self) -> float:
        """Share of a full ensemble retrain that this forget costs (0 when nothing retrains)."""
        return self.cost / self.ensemble_cost if self.ensemble_cost else 0.0

    @property
    def compute_bound(self) -> float:
        """Largest speed-up over a full retrain that the schedule allows (1 / fraction)."""
        return 1.0 / self.fraction if self.cost else float("inf")

    @property
    def shard_ids(self) -> list[int]:
        """Ids of the shards that retrain."""
        return [shard.shard_id for shard in self.shards]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "shards": [
                {
                    "shard_id": s.shard_id,
                    "records": s.num_records,
                    "first_stage": s.first_stage,
                    "stages_to_train": s.stages_to_train,
                    "cost": s.cost,
                }
                for s in self.shards
            ],
            "cost": self.cost,
            "ensemble_cost": self.ensemble_cost,
            "fraction": self.fraction,
            "holdout_records": self.holdout_records,
            "already_forgotten": len(self.already_forgotten),
        }


def plan_retraining(
    slice_counts: Mapping[int, Sequence[int]],
    forgotten_slices: Mapping[int, Sequence[int]],
    *,
    holdout_records: int = 0,
    already_forgotten: Sequence[str] = (),
    from_first_stage: bool = False,
) -> RetrainingPlan:
    """Plan a forget from per-shard slice sizes and the slices of the records to forget.

    Args:
        slice_counts: for every shard, its record count per slice before the forget.
        forgotten_slices: for each affected shard, the slice of each record to forget.
        holdout_records: how many of the records are in the held-out split.
        already_forgotten: ids that were forgotten earlier.
        from_first_stage: every affected shard retrains all its stages (DP-SGD: the noise
            multiplier is calibrated to the shard's size, which the forget changes).

    Returns:
        The plan: each affected shard retrains from the first slice that held a forgotten
        record, i.e. resumes from the checkpoint of the last stage that never saw one.
    """
    remaining = {shard: list(counts) for shard, counts in slice_counts.items()}
    for shard, slices in forgotten_slices.items():
        for slice_id in slices:
            remaining[shard][slice_id] -= 1
    plans = []
    for shard in sorted(forgotten_slices):
        slices = forgotten_slices[shard]
        if not slices:
            continue
        first = 0 if from_first_stage else min(slices)
        counts = remaining[shard]
        plans.append(
            ShardPlan(
                shard_id=shard,
                num_records=len(slices),
                first_stage=first,
                stages=len(counts),
                cost=schedule_cost(counts, first),
                full_cost=schedule_cost(counts),
            )
        )
    return RetrainingPlan(
        shards=tuple(plans),
        ensemble_cost=sum(schedule_cost(counts) for counts in remaining.values()),
        holdout_records=holdout_records,
        already_forgotten=tuple(already_forgotten),
    )

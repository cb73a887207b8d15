"""Prefect tasks: each wraps one library call of :mod:`unlearn_ops.workflow`, nothing more.

Every task opts out of caching: each run must act on the workspace as it is now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from unlearn_ops.serving import promotion
from unlearn_ops.sisa import verification
from unlearn_ops.workflow import (
    batch,
    preparation,
    registration,
    retraining,
    revisions,
    rollback,
    shard_exchange,
)

P = ParamSpec("P")
R = TypeVar("R")


def as_task(function: Callable[P, R], name: str) -> Task[P, R]:
    """`function` as a Prefect task named `name`, without caching (every flow's tasks)."""
    return task(name=name, cache_policy=NO_CACHE)(function)


prepare_data = as_task(preparation.prepare_data, "prepare-shards")
hold_back = as_task(batch.hold_back, "hold-back-held-records")
receive_requests = as_task(batch.receive_requests, "receive-requests")
check_batch = as_task(batch.check_batch, "check-requests")
close_noop = as_task(batch.close_noop, "close-served-requests")
apply_batch = as_task(batch.apply_batch, "remove-records")
stale_shards = as_task(retraining.stale_shards, "find-stale-shards")
train_shard = as_task(retraining.train_one_shard, "train-shard")
# Shards on workers without the workspace's disk (unlearn_ops.workflow.shard_exchange).
stage_shard = as_task(shard_exchange.stage_shard, "stage-shard")
train_staged_shard = as_task(shard_exchange.train_staged_shard, "train-staged-shard")
collect_shard = as_task(shard_exchange.collect_shard, "collect-shard")
evaluate = as_task(retraining.evaluate, "evaluate")
run_gates = as_task(retraining.run_gates, "run-gates")
record_revision = as_task(revisions.record_revision, "record-data-revision")
register_version = as_task(registration.register_version, "register-version")
mark_applied = as_task(revisions.mark_applied, "mark-applied")
promote_and_close = as_task(registration.promote_and_close, "promote-champion")

# Deletion-safe rollback (unlearn_ops.workflow.rollback).
mark_unsafe_versions = as_task(rollback.mark_unsafe_versions, "mark-unsafe-versions")
plan_rollback = as_task(rollback.plan_rollback, "plan-rollback")
restore_version = as_task(rollback.restore_version, "restore-version")
record_rollback = as_task(rollback.record_rollback, "record-rollback-revision")
restore_settings = as_task(rollback.restore_settings, "restore-settings")
promote = as_task(promotion.promote, "move-champion")

# The certificate's from-scratch retrainings (pipelines/certify.py).
retrain_from_scratch = as_task(verification.retrain_from_scratch, "retrain-from-scratch")

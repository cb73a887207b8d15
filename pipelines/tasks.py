"""Prefect tasks: each wraps one step of :mod:`unlearn_ops.workflow.steps`, nothing more.

Every task opts out of caching: each run must act on the workspace as it is now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from unlearn_ops.workflow import rollback, steps

P = ParamSpec("P")
R = TypeVar("R")


def _task(function: Callable[P, R], name: str) -> Task[P, R]:
    return task(name=name, cache_policy=NO_CACHE)(function)


prepare_data = _task(steps.prepare_data, "prepare-shards")
receive_requests = _task(steps.receive_requests, "receive-requests")
check_batch = _task(steps.check_batch, "check-requests")
close_noop = _task(steps.close_noop, "close-served-requests")
apply_batch = _task(steps.apply_batch, "remove-records")
stale_shards = _task(steps.stale_shards, "find-stale-shards")
train_shard = _task(steps.train_one_shard, "train-shard")
evaluate = _task(steps.evaluate, "evaluate")
run_gates = _task(steps.run_gates, "run-gates")
record_revision = _task(steps.record_revision, "record-data-revision")
register_version = _task(steps.register_version, "register-version")
mark_applied = _task(steps.mark_applied, "mark-applied")
promote_and_close = _task(steps.promote_and_close, "promote-champion")

# Deletion-safe rollback (unlearn_ops.workflow.rollback).
mark_unsafe_versions = _task(rollback.mark_unsafe_versions, "mark-unsafe-versions")
plan_rollback = _task(rollback.plan_rollback, "plan-rollback")
restore_version = _task(rollback.restore_version, "restore-version")
restore_settings = _task(rollback.restore_settings, "restore-settings")
promote = _task(steps.promote, "move-champion")

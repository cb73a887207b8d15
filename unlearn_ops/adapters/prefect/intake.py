"""The Prefect intake: requests that reached Prefect as events, recorded through `receive`.

A run of the `forget-on-deletion-event` deployment records its own event's envelope, then,
while it gathers a burst, polls (:meth:`PrefectEventIntake.poll`):

- the runs that events queued meanwhile for the same deployment: their envelopes are
  recorded and the runs cancelled ("coalesced into flow run <id>"), since their requests
  are in the inbox now and the runs have nothing left to do;
- the event store (by event id, ``prefect-event:<id>``, so an event is recorded once
  however it arrives: as a run's parameter or read from the store).

Every envelope goes through :func:`~unlearn_ops.deletion.receive.receive`; the outcomes are
counted in :attr:`PrefectEventIntake.received`.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING

from unlearn_ops.adapters.prefect.events import read_events
from unlearn_ops.adapters.prefect.runs import cancel_run, queued_runs
from unlearn_ops.deletion.receive import (
    Accepted,
    Duplicate,
    Outcome,
    ReceiveCounts,
    receive,
)

if TYPE_CHECKING:
    from unlearn_ops.deletion.inbox import Inbox

__all__ = ["PrefectEventIntake", "status_word"]


def status_word(outcome: Outcome) -> str:
    """`new`, `duplicate` or `rejected:<kind>`: an outcome as a flow run's result says it."""
    if isinstance(outcome, Accepted):
        return "new"
    if isinstance(outcome, Duplicate):
        return "duplicate"
    return f"rejected:{outcome.kind}"


@dataclass(eq=False, repr=False)
class PrefectEventIntake:
    """Deletion requests of one workspace's resource that reached Prefect.

    Args:
        inbox: where requests (and refusals) are recorded.
        resource: the workspace's event resource (``unlearn.workspace.<model>``).
        deployment_id: the deployment whose queued runs are coalesced ("" outside one:
            then :meth:`poll` finds nothing).
        run_id: the flow run doing this (never cancelled, named in the cancel message).
        lookback_seconds: how far back the event store is read.
    """

    inbox: Inbox
    resource: str
    _: KW_ONLY
    deployment_id: str = ""
    run_id: str = ""
    lookback_seconds: float = 3600.0
    received: ReceiveCounts = field(default_factory=ReceiveCounts, init=False)
    coalesced: int = field(default=0, init=False)

    def __repr__(self) -> str:
        return f"PrefectEventIntake({self.resource!r}, deployment={self.deployment_id or None})"

    def receive(self, envelope: object, delivery_id: str) -> Outcome:
        """Record one envelope delivered by Prefect (`delivery_id` names the delivery)."""
        outcome = receive(self.inbox, envelope, source=delivery_id, delivery_id=delivery_id)
        self.received.add(outcome)
        return outcome

    def poll(self) -> int:
        """Record the requests of queued runs (cancelling them) and of the event store.

        Returns:
            How many requests were new to the inbox.

        Raises:
            OrchestratorError: Prefect's API failed (what was recorded stays recorded).
        """
        if not self.deployment_id:
            return 0
        return self._coalesce_queued() + self._pull_events()

    def _coalesce_queued(self) -> int:
        new = 0
        for queued in queued_runs(self.deployment_id, exclude=self.run_id):
            envelope = queued.parameters.get("envelope")
            if envelope is not None:
                delivery = queued.parameters.get("delivery_id") or f"prefect-run:{queued.id}"
                new += isinstance(self.receive(envelope, str(delivery)), Accepted)
            # Its request is durable in the inbox now: the run itself has nothing left to do.
            cancel_run(queued.id, f"coalesced into flow run {self.run_id}")
            self.coalesced += 1
        return new

    def _pull_events(self) -> int:
        new = 0
        for event in read_events(self.resource, lookback_seconds=self.lookback_seconds):
            delivery = f"prefect-event:{event['id']}"  # seen before: recorded once
            new += isinstance(self.receive(event.get("payload"), delivery), Accepted)
        return new

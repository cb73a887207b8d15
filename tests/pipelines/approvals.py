"""A person answering an approval: a thread that resumes the first paused flow run."""

from __future__ import annotations

import threading
import time
from typing import Any


def answer_when_paused(
    decision: dict[str, Any], seen: dict[str, Any] | None = None, timeout: float = 120.0
) -> threading.Thread:
    """Start a thread that waits for a paused flow run and resumes it with `decision`.

    The form the person saw in the Prefect UI (the run input's description) is put in
    `seen["form"]`. Join the thread after the flow returns.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import read_flow_run_input
    from prefect.input.run_input import keyset_from_paused_state

    def answer() -> None:
        deadline = time.monotonic() + timeout
        paused_only = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        )
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                paused = client.read_flow_runs(flow_run_filter=paused_only, limit=10)
                if paused:
                    if seen is not None:
                        keys = keyset_from_paused_state(paused[0].state)
                        seen["form"] = read_flow_run_input(keys["description"], paused[0].id)
                    resume_flow_run(paused[0].id, run_input=decision)
                    return
                time.sleep(0.5)

    thread = threading.Thread(target=answer)
    thread.start()
    return thread

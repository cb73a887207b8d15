"""What polls of the S3 intake did, counted (:class:`PollReport`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from unlearn_ops.deletion.receive import Accepted, Duplicate, Outcome

__all__ = ["PollReport"]


@dataclass
class PollReport:
    """What one or more polls did.

    Attributes:
        messages: SQS messages received.
        accepted: requests recorded as new.
        duplicates: files whose request the inbox held already (deleted too).
        rejected: files refused (moved under the rejected prefix) and notifications that
            were not S3 notifications.
        skipped: test events, and records outside the prefix, the bucket or object creation.
        gone: records whose object no longer exists (handled before, or moved).
        errors: one line per failure; its message stays on the queue to be received again.
        accepted_ids: the request ids recorded as new, in order.
    """

    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: int = 0
    gone: int = 0
    errors: list[str] = field(default_factory=list)
    accepted_ids: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        """Count what :func:`~unlearn_ops.deletion.receive.receive` made of one file."""
        if isinstance(outcome, Accepted):
            self.accepted += 1
            self.accepted_ids.append(outcome.request_id)
        elif isinstance(outcome, Duplicate):
            self.duplicates += 1
        else:
            self.rejected += 1

    @property
    def ok(self) -> bool:
        """No failure: every message received was handled and deleted."""
        return not self.errors

    def __add__(self, other: PollReport) -> PollReport:
        """Two reports summed (for a loop of polls)."""
        if not isinstance(other, PollReport):
            return NotImplemented
        return PollReport(
            messages=self.messages + other.messages,
            accepted=self.accepted + other.accepted,
            duplicates=self.duplicates + other.duplicates,
            rejected=self.rejected + other.rejected,
            skipped=self.skipped + other.skipped,
            gone=self.gone + other.gone,
            errors=[*self.errors, *other.errors],
            accepted_ids=[*self.accepted_ids, *other.accepted_ids],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

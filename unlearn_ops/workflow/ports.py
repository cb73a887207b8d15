"""The data lineage port: what the workflow asks of a workspace's versioned history.

:class:`~unlearn_ops.adapters.dvc.lineage.DvcLineage` implements it on git + DVC;
:class:`~unlearn_ops.testing.InMemoryLineage` is the fake that tests inject (one contract
test class runs over both, tests/workflow/test_lineage_contract.py). Small files are versioned as
text ("git files"); shard tables, the manifest and the weights as bytes (DVC outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypedDict, Unpack

from unlearn_ops.workflow.revisions import DataRevision

__all__ = ["DataLineage", "RevisionScope"]


class RevisionScope(TypedDict, total=False):
    """What a recorded revision is tagged with and reports; an absent key is empty.

    The keywords of :meth:`DataLineage.record_revision`, declared once for the port and
    every implementation of it.

    Attributes:
        tags: tags to point at the new revision (moved there if they exist: a rerun after
            a crash completes the same request).
        shard_ids: the shards whose file md5 the revision reports.
        stages: the only pipeline stages whose outputs changed since the last revision
            (their lock entries alone are refreshed); empty: every stage.
    """

    tags: Sequence[str]
    shard_ids: Sequence[int]
    stages: Sequence[str]


class DataLineage(Protocol):
    """The versioned history of one workspace's files."""

    def init_repository(self) -> str:
        """Start the history (kept if it exists) and record the files present; the head sha."""
        ...

    def record_revision(self, message: str, **scope: Unpack[RevisionScope]) -> DataRevision:
        """Record the workspace's files as a new revision (none if nothing changed); tag it.

        `scope`: the tags, the shards to report and the stages that changed
        (:class:`RevisionScope`).

        Raises:
            LineageError: the backend could not record or push.
        """
        ...

    def record_files(self, message: str, paths: Sequence[str], tags: Sequence[str] = ()) -> str:
        """Record these small files (paths in the workspace) as a new revision, none if they
        did not change, without the pipeline's outputs; tag it; the head sha.

        For state that is not a pipeline output (a federation's membership and served
        groups, issue 13). A path that does not exist is left out.

        Raises:
            LineageError: the backend could not record (no history started, say).
        """
        ...

    def current_revision(self, shard_ids: Sequence[int]) -> DataRevision:
        """The head, with md5s computed from the files as they are (nothing recorded)."""
        ...

    def head(self) -> str:
        """The sha of the newest revision."""
        ...

    def parent_commit(self, rev: str) -> str | None:
        """The revision before `rev` (None for the first).

        Raises:
            LineageError: `rev` is not a revision.
        """
        ...

    def read_git_file(self, rev: str, path: str) -> str:
        """A small versioned file's text at a revision.

        Raises:
            LineageError: no such revision, or the file is not a small file there.
        """
        ...

    def read_at_revision(self, path: str, rev: str) -> bytes:
        """The bytes of any versioned file (shard tables and weights too) at a revision.

        Raises:
            LineageError: no such revision or file, or its data is no longer stored.
        """
        ...

    def is_clean(self) -> bool:
        """Whether the files are as the head revision recorded them."""
        ...

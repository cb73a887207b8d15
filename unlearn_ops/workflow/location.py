"""Where a workspace is: the nearest folder holding its params.yaml and dvc.yaml.

Apart from :mod:`unlearn_ops.workflow.workspace` (which re-exports both names) so that a
command can find its workspace before it imports anything heavy (the warm runner's
client, :mod:`unlearn_ops.cli.warm`).
"""

from __future__ import annotations

from pathlib import Path

from unlearn_ops.errors import WorkspaceNotFoundError

__all__ = ["PARAMS_FILE", "find_workspace"]

PARAMS_FILE = "params.yaml"


def find_workspace(start: str | Path) -> Path:
    """The workspace containing `start`: it or its nearest parent with a params.yaml.

    Raises:
        WorkspaceNotFoundError: none up to the filesystem root.
    """
    start = Path(start).resolve()
    for candidate in (start, *start.parents):
        if (candidate / PARAMS_FILE).is_file() and (candidate / "dvc.yaml").is_file():
            return candidate
    raise WorkspaceNotFoundError(start)

"""The `unlearn-ops` command line: the composition root, the only place that imports `pipelines`."""

from unlearn_ops.cli.app import app, main

__all__ = ["app", "main"]

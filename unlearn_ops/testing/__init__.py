"""Fakes of unlearn-ops's own ports, shipped for tests: injected, never patched.

- :class:`InMemoryRegistry`: the :class:`~unlearn_ops.serving.ports.ModelRegistry` port in
  memory (versions, tags, aliases, and the model files, so that a version loads).
- :class:`InMemoryLineage`: the :class:`~unlearn_ops.workflow.ports.DataLineage` port in
  memory (each revision a snapshot of the workspace's versioned files).
- :class:`~unlearn_ops.testing.gates.FakeGateRunner` (module `unlearn_ops.testing.gates`):
  the :class:`~unlearn_ops.serving.gates.GateRunner` port without great-expectations.
- :func:`fail_at`: any port (fake or real) that raises at a named call, to test what a
  crash there leaves behind.

Inject them when opening a workspace::

    ws = Workspace.open(root, registry=InMemoryRegistry(), lineage=InMemoryLineage(root))

The contract tests (tests/serving/test_registry_contract.py,
tests/workflow/test_lineage_contract.py) run the same assertions over each fake and its
real adapter, so a fake cannot drift from the backend.
"""

from unlearn_ops.testing.failures import InjectedCrashError, fail_at
from unlearn_ops.testing.lineage import InMemoryLineage
from unlearn_ops.testing.registry import InMemoryRegistry

__all__ = ["InMemoryLineage", "InMemoryRegistry", "InjectedCrashError", "fail_at"]

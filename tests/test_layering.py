"""The architecture's rules, checked by parsing every module's imports (docs/ARCHITECTURE.md).

- only `unlearn_ops/adapters/` and `pipelines/` import a backend (mlflow, dvc, prefect,
  boto3, botocore, great_expectations), at module level or inside a function;
- only the CLI (the composition root) imports `pipelines`;
- no import cycle between modules (imports under `if TYPE_CHECKING:` excepted: they never run);
- no module over MAX_LINES lines without the reason at its top (`Why this module is long:`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {
    "mlflow",
    "dvc",
    "prefect",
    "prefect_dask",
    "dask",
    "distributed",
    "boto3",
    "botocore",
    "great_expectations",
    "flwr",
}
MAX_LINES = 400
LONG_REASON = "Why this module is long:"


def module_name(path: Path) -> str:
    """`unlearn_ops/sisa/models.py` -> `unlearn_ops.sisa.models` (a package is its `__init__`)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SOURCES = {
    module_name(path): path
    for folder in ("unlearn_ops", "pipelines")
    for path in sorted((ROOT / folder).rglob("*.py"))
}


def is_type_checking_block(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): imports there never run."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path) -> Iterator[str]:
    """Every module a file imports when it runs, anywhere in the file (functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST) -> Iterator[str]:
        if is_type_checking_block(node):
            assert isinstance(node, ast.If)
            for child in node.orelse:
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield target
            for alias in node.names:
                # `from unlearn_ops.compliance import purge` imports the module purge.
                if f"{target}.{alias.name}" in SOURCES:
                    yield f"{target}.{alias.name}"
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


IMPORTS = {name: sorted(set(imported_modules(path))) for name, path in SOURCES.items()}


def test_the_sources_were_found() -> None:
    assert "unlearn_ops.sisa.ensemble" in SOURCES
    assert "pipelines.forget" in SOURCES
    assert any("prefect" in imports for imports in IMPORTS.values())


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_only_adapters_and_pipelines_import_a_backend(name: str) -> None:
    if name.startswith(("unlearn_ops.adapters", "pipelines")):
        return
    backends = sorted({i for i in IMPORTS[name] if i.split(".")[0] in BACKENDS})
    assert not backends, f"{name} imports {backends}: move that code into unlearn_ops/adapters/"


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_only_the_cli_imports_pipelines(name: str) -> None:
    if name.startswith(("unlearn_ops.cli", "pipelines")):
        return
    flows = sorted(i for i in IMPORTS[name] if i.split(".")[0] == "pipelines")
    assert not flows, f"{name} imports {flows}: the library never imports the flows"


def test_no_import_cycle() -> None:
    graph = {name: {i for i in deps if i in SOURCES} - {name} for name, deps in IMPORTS.items()}
    # A package's __init__ importing its own modules is how packages export; not a cycle.
    for name in graph:
        graph[name] = {i for i in graph[name] if not name.startswith(f"{i}.")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_long_modules_say_why(name: str) -> None:
    path = SOURCES[name]
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    if lines <= MAX_LINES:
        return
    docstring = ast.get_docstring(ast.parse(text)) or ""
    assert LONG_REASON in docstring, (
        f"{path.relative_to(ROOT)} has {lines} lines (> {MAX_LINES}): split it by concept, or say "
        f"at its top why not ('{LONG_REASON} ...')"
    )

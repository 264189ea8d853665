"""The package's layout: no import cycle between any two modules, no module over 450 lines.

The order of the packages, and where the AWS SDK may be imported, are import-linter
contracts in pyproject.toml (``lint-imports``, run by ``make test``); this test also
runs them, so that ``pytest`` alone keeps them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "replicator"
MAX_LINES = 450


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_and_nothing_else() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_that_imports_it_back() -> None:
    graph = grimp.build_graph("replicator")
    edges = {
        module: {imported for imported in graph.find_modules_directly_imported_by(module)
                 if imported.startswith("replicator")}
        for module in graph.modules if module.startswith("replicator")
    }
    assert edges, "no module of replicator/ was read"
    assert cycles(edges) == []


def test_no_package_imports_another_that_imports_it_back() -> None:
    graph = grimp.build_graph("replicator")
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        if not module.startswith("replicator"):
            continue
        package = ".".join(module.split(".")[:2])
        for imported in graph.find_modules_directly_imported_by(module):
            other = ".".join(imported.split(".")[:2])
            if imported.startswith("replicator") and other != package:
                edges.setdefault(package, set()).add(other)
    assert cycles(edges) == []


def test_no_module_is_over_450_lines() -> None:
    sizes = {path.relative_to(ROOT).as_posix(): len(path.read_text().splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert len(sizes) > 20
    assert {path: lines for path, lines in sizes.items() if lines > MAX_LINES} == {}


@pytest.mark.timeout(60)
def test_the_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True,
                            text=True, timeout=50, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout

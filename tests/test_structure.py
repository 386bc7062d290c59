"""The package keeps the shape it promises: small modules and functions, simple control flow,
and imports that only flow one way (no cycles)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from radon.complexity import cc_rank, cc_visit

PACKAGE = Path(__file__).resolve().parent.parent / "langswarm"
MEMORY = PACKAGE / "core" / "memory"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def _modules() -> Iterator[Path]:
    yield from sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports when it runs (``TYPE_CHECKING`` blocks
    aside), wherever the import statement sits."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("langswarm")}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            module = ".".join([*base, node.module] if node.module else base)
            if node.level == 0:
                module = node.module or ""
            if module.startswith("langswarm"):
                found.add(module)
                found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_name(path): path for path in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # Importing a submodule runs its parents' __init__ first; that is not a dependency
        # of the submodule on its siblings, so parents are left out.
        graph[name] = {
            dep
            for dep in _runtime_imports(path)
            if dep in modules and dep != name and not name.startswith(dep + ".")
        }
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_import_graph_has_no_cycles() -> None:
    graph = _graph()
    assert graph["langswarm.core.memory._session"], "the graph should see imports"
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_a_planted_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]


def test_modules_are_small() -> None:
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in _modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_functions_are_short() -> None:
    long: dict[str, int] = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}::{node.name}"] = lines
    assert long == {}


def test_cyclomatic_complexity_is_at_most_c() -> None:
    complex_ = {
        f"{path.relative_to(PACKAGE)}::{block.fullname}": block.complexity
        for path in _modules()
        for block in cc_visit(path.read_text())
        if cc_rank(block.complexity) > "C"
    }
    assert complex_ == {}

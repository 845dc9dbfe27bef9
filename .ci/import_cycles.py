"""Find import cycles among overlord's module-level imports (standard library only).

Imports at module level (not those under `if TYPE_CHECKING:`, which never run) form a graph between overlord modules; any cycle in it fails. Imports inside functions
are how a cycle is usually hidden, so they are counted and printed, not followed.

Usage: python3 .ci/import_cycles.py [package_dir] [-v]   (default: overlord; -v lists the
cycles that imports inside functions close)
Exit status 1 when there is a module-level cycle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    """The absolute module an ImportFrom names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements that run at import: the body, plus if/try/with blocks within it."""
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.If):
            if not is_type_checking(stmt.test):
                out += module_level(stmt.body)
            out += module_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            out += module_level(stmt.body)
            for handler in stmt.handlers:
                out += module_level(handler.body)
            out += module_level(stmt.orelse) + module_level(stmt.finalbody)
        elif isinstance(stmt, ast.With):
            out += module_level(stmt.body)
        else:
            out.append(stmt)
    return out


def targets(stmt: ast.stmt, current: str, is_package: bool, known: set[str]) -> set[str]:
    """The overlord modules an import statement loads."""
    found: set[str] = set()
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            found.add(alias.name)
    elif isinstance(stmt, ast.ImportFrom):
        base = resolve(stmt, current, is_package)
        found.add(base)
        for alias in stmt.names:  # `from overlord import store` loads overlord.adapters.sql.store
            if f"{base}.{alias.name}" in known:
                found.add(f"{base}.{alias.name}")
    out: set[str] = set()
    for name in found:
        # importing a.b.c also runs a/__init__ and a.b/__init__, except the packages that
        # contain the importing module: those are already running before it starts
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in known and prefix != current and not current.startswith(prefix + "."):
                out.add(prefix)
    return out


def build(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]], int]:
    """(module-level import graph, the same with imports inside functions added, how many
    imports inside functions there are)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    graph: dict[str, set[str]] = {}
    hidden: dict[str, set[str]] = {}
    inner = 0
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        top = module_level(tree.body)
        top_ids = {id(s) for s in top}
        edges: set[str] = set()
        for stmt in top:
            edges |= targets(stmt, name, is_package, known)
        skip = top_ids | type_checking_ids(tree)
        late = [
            node
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip
        ]
        inner += len(late)
        graph[name] = edges
        hidden[name] = set(edges)
        for node in late:
            hidden[name] |= targets(node, name, is_package, known)
    return graph, hidden, inner


def type_checking_ids(tree: ast.Module) -> set[int]:
    """Imports under `if TYPE_CHECKING:` never run: neither module-level nor in functions."""
    return {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and is_type_checking(node.test)
        for stmt in node.body
        for n in ast.walk(stmt)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def main(argv: list[str]) -> int:
    paths = [a for a in argv[1:] if not a.startswith("-")]
    root = Path(paths[0] if paths else "overlord").resolve()
    graph, hidden, inner = build(root)
    found = cycles(graph)
    edges = sum(len(e) for e in graph.values())
    print(f"{len(graph)} modules, {edges} module-level imports between them")
    print(f"{inner} imports inside functions (not followed for the check)")
    tangled = cycles(hidden)
    print(
        f"{len(tangled)} cycle(s) closed only by imports inside functions "
        f"({sum(len(c) for c in tangled)} modules; informational)"
    )
    if "-v" in argv:
        for component in tangled:
            print("  hidden cycle: " + " <-> ".join(component))
    if not found:
        print("no module-level import cycles")
        return 0
    for component in found:
        print("import cycle: " + " <-> ".join(component))
    print(f"{len(found)} module-level import cycle(s): break them (move the shared part out)")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

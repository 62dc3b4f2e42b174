"""The import layers, checked from the source (no module is imported):

    gui, cli (the two faces)  →  core.library, core.errors  →  the rest of core

- `core` imports no Qt, and nothing of `gui`, `cli`, `launcher` or `failures` (the faces' side);
- `gui` and `cli` do not import each other; `imagehash-app` with no sub-command reaches the window
  only through `imagehash_app.launcher`, and the window's entry point reaches no `cli` module;
- `gui` and `cli` import from `core` only `library` and `errors` (`cli/eval.py`, a research
  harness, may also use `core.evaluation` and `core.hashing`);
- the package's modules import each other without a cycle.

Edges counted: every `import` / `from ... import` anywhere in a module (functions included), the
target being the deepest module of the package it names (`from imagehash_app.core import health`
→ `imagehash_app.core.health`). Not counted: imports under `if TYPE_CHECKING:` (never run), and the
implicit import of a module's parent packages.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "imagehash_app"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
QT = ("PySide6", "PyQt5", "PyQt6", "shiboken6")
FACES = ("imagehash_app.gui", "imagehash_app.cli")
CORE_FOR_FACES = {"imagehash_app.core.library", "imagehash_app.core.errors"}
HARNESS = {"imagehash_app.cli.eval"}  # a research harness: may also use these
HARNESS_CORE = ("imagehash_app.core.evaluation", "imagehash_app.core.hashing")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child):
            for other in child.orelse:
                yield from _import_nodes(other)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _import_nodes(child)


def imports_of(name: str) -> set[str]:
    """Every module `name` imports: the package's own (deepest module named) and outside ones."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative import
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            out.add(full if full in MODULES else base)
    return out


GRAPH = {name: imports_of(name) for name in MODULES}


def inside(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def reachable(start: str, avoid: str | None = None) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        for target in GRAPH.get(name, ()):
            if target in MODULES and target not in seen and target != avoid:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_graph_is_real() -> None:
    """The parser sees the imports it should (a guard against a test that checks nothing)."""
    assert "imagehash_app.core.library" in GRAPH["imagehash_app.cli.commands"]
    assert "imagehash_app.core.training" in GRAPH["imagehash_app.core.library"]
    assert "imagehash_app.gui.app" in GRAPH["imagehash_app.launcher"]  # a function-level import
    assert len(MODULES) > 50


def test_core_imports_no_qt_and_no_face() -> None:
    bad = {
        (name, target)
        for name, targets in GRAPH.items() if inside(name, "imagehash_app.core")
        for target in targets
        if target.split(".")[0] in QT
        or any(inside(target, f"{PACKAGE}.{upper}") for upper in ("gui", "cli", "launcher", "failures"))
    }
    assert bad == set()


def test_the_faces_do_not_import_each_other() -> None:
    bad = {
        (name, target)
        for name, targets in GRAPH.items()
        for face, other in (FACES, FACES[::-1]) if inside(name, face)
        for target in targets if inside(target, other)
    }
    assert bad == set()
    assert not any(inside(m, "imagehash_app.cli") for m in reachable("imagehash_app.gui.app"))
    # The command line reaches the window only through the launcher.
    through = reachable("imagehash_app.cli", avoid="imagehash_app.launcher")
    assert not any(inside(m, "imagehash_app.gui") for m in through)


def test_the_faces_use_only_library_and_errors_of_core() -> None:
    bad = {
        (name, target)
        for name, targets in GRAPH.items()
        if any(inside(name, face) for face in FACES)
        for target in targets
        if inside(target, "imagehash_app.core") and target not in CORE_FOR_FACES
        and not (name in HARNESS and any(inside(target, h) for h in HARNESS_CORE))
    }
    assert bad == set()


def test_no_import_cycle() -> None:
    """Depth-first search over the package's modules; a back edge is a cycle, reported whole."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH[name]):
            if target not in MODULES:
                continue
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name)
    assert cycles == []

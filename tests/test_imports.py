"""Import hygiene: the core and the CLI load without a GUI, every module imports, and the
package's internal import graph has no cycle (function-level imports included)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import napari_deconoising

PACKAGE = napari_deconoising.__name__
ROOT = Path(napari_deconoising.__file__).resolve().parent
# Modules that need Qt/napari; imported only where those are installed.
GUI_PREFIXES = (f"{PACKAGE}._widgets",)


def test_core_and_cli_import_no_gui():
    code = (
        "import sys, napari_deconoising.core, napari_deconoising.cli, napari_deconoising.demo;"
        "bad=[m for m in ('napari','qtpy','PyQt6','PyQt5','PySide6','magicgui') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def all_modules() -> list[str]:
    """Every module and package below the package, found on disk without importing them.

    (``pkgutil.walk_packages`` imports each subpackage to descend into it and silently
    skips one that fails; a broken subpackage must fail a test, not vanish from it.)
    """
    names, todo = [PACKAGE], [(ROOT, PACKAGE)]
    while todo:
        folder, prefix = todo.pop()
        for info in pkgutil.iter_modules([str(folder)], prefix=f"{prefix}."):
            names.append(info.name)
            if info.ispkg:
                todo.append((folder / info.name.rsplit(".", 1)[1], info.name))
    return sorted(names)


def module_path(name: str) -> Path:
    rel = Path(*name.split(".")[1:])
    pkg = ROOT / rel / "__init__.py"
    return pkg if pkg.is_file() else (ROOT / rel).with_suffix(".py")


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _import_nodes(tree: ast.AST):
    """Every import statement, at any depth, except under ``if TYPE_CHECKING:`` (never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if _is_type_checking_block(node):
            children = list(node.orelse)
        stack.extend(children)


def internal_imports(name: str, modules: set[str]) -> set[str]:
    """The package modules that ``name`` imports, resolved to the module actually named.

    ``from .core import load_model`` is an edge to ``core`` (its ``__init__``);
    ``from . import cli`` and ``from .core.modelfile import x`` are edges to those modules.
    Implicit imports of parent packages are not edges: counting them would make every
    submodule a cycle with its package.
    """
    path = module_path(name)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
        for t in targets:
            # ``import a.b.c`` names module a.b.c; keep the longest known prefix.
            parts = t.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = set(all_modules())
    return {m: internal_imports(m, modules) for m in sorted(modules)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in graph:
        if state.get(start):
            continue
        path, iters = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()))))
    return None


@pytest.mark.parametrize("name", all_modules())
def test_every_module_imports(name):
    if name.startswith(GUI_PREFIXES):
        pytest.importorskip("qtpy")
        pytest.importorskip("napari")
    importlib.import_module(name)


def test_the_internal_import_graph_has_no_cycle():
    graph = import_graph()
    assert graph[f"{PACKAGE}.cli"], "the graph builder found no imports at all"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles_and_resolves_relative_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    graph = import_graph()
    # function-level import in cli.cmd_demo, and a package-relative one in core/__init__
    assert f"{PACKAGE}.demo" in graph[f"{PACKAGE}.cli"]
    assert f"{PACKAGE}.core.model" in graph[f"{PACKAGE}.core"]


if __name__ == "__main__":  # print the graph: python tests/test_imports.py
    g = import_graph()
    for mod, deps in g.items():
        short = lambda m: m.removeprefix(PACKAGE + ".") or PACKAGE  # noqa: E731
        print(f"{short(mod)} -> {', '.join(sorted(map(short, deps))) or '-'}")
    print("cycle:", find_cycle(g))

"""The package's shape: every module fits in one sitting, and no two modules import each other in a circle.

Issue 21's bar: no module under `llmprep/` over 450 lines (the Python models under templates/
included) and no import circle. The import graph is read with `ast` from the sources, imports
inside functions included (a late import still closes a circle, it only hides it until run time),
and `importlib.import_module` of a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "llmprep"
MAX_LINES = 450
# Files still over MAX_LINES while their splits land this session (issue 21); remove an entry as
# its split lands, and the whole mark once the list is empty.
STILL_OVER: frozenset[str] = frozenset()
# Packages whose circles are being undone (issue 21): a circle wholly inside one is tolerated by the
# second test below, and the first is an xfail. Empty since the lab's last circle
# (hpa ↔ hpa_spec ↔ metrics ↔ timing) was undone: both tests are strict.
PENDING_CIRCLES_IN: tuple[str, ...] = ()


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


def _size_cases() -> Iterator[object]:
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        marks = (
            [pytest.mark.xfail(strict=False, reason=f"{rel}: split pending (issue 21)")] if rel in STILL_OVER else []
        )
        yield pytest.param(path, id=rel, marks=marks)


@pytest.mark.parametrize("path", list(_size_cases()))
def test_no_module_under_llmprep_is_over_450_lines(path: Path) -> None:
    lines = _line_count(path)
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines; split it along its seams (≤ {MAX_LINES})"


# --------------------------------------------------------------------------- the import graph


def module_name(path: Path, root: Path = ROOT) -> str:
    """`llmprep/serve/plan.py` → `llmprep.serve.plan`; a package's `__init__.py` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The module a dotted name lands in: itself, else its longest prefix that is a module."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run, skipping `if TYPE_CHECKING:` bodies (annotations only, never imported)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _import_module_call(node: ast.AST) -> str | None:
    """The name `importlib.import_module("name")` (or a bare `import_module("name")`) loads, when a literal."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "import_module"
    )
    first = node.args[0]
    if named and isinstance(first, ast.Constant) and isinstance(first.value, str) and not first.value.startswith("."):
        return first.value
    return None


def imports_of(path: Path, modules: Mapping[str, Path], root: Path = ROOT) -> set[str]:
    """The package modules that `path` imports anywhere in its body (top level, functions, branches),
    `importlib.import_module` of a literal name included."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        loaded = _import_module_call(node)
        if loaded is not None:
            targets = [loaded]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name`: the submodule when `name` is one, else the package itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, modules)
            if resolved is not None and resolved != here:
                found.add(resolved)
    return found


def import_graph(root: Path = ROOT, package: str = "llmprep") -> dict[str, set[str]]:
    files = sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)
    modules = {module_name(p, root): p for p in files}
    return {name: imports_of(path, modules, root) for name, path in modules.items()}


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted, the list sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _described(groups: list[list[str]]) -> str:
    return "import circles: " + "; ".join(" ↔ ".join(group) for group in groups)


@pytest.mark.xfail(bool(PENDING_CIRCLES_IN), strict=False, reason=f"circles pending in {PENDING_CIRCLES_IN} (issue 21)")
def test_no_two_llmprep_modules_import_each_other_in_a_circle() -> None:
    found = circles(import_graph())
    assert found == [], _described(found)


def test_no_import_circle_outside_the_packages_still_being_split() -> None:
    def pending(group: list[str]) -> bool:
        return any(all(m.startswith(prefix) for m in group) for prefix in PENDING_CIRCLES_IN)

    found = [group for group in circles(import_graph()) if not pending(group)]
    assert found == [], _described(found)


def test_the_circle_finder_sees_a_circle_closed_by_an_import_inside_a_function(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def late():\n    from pkg import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from . import a\n")
    graph = import_graph(tmp_path, "pkg")
    assert circles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert graph["pkg.d"] == {"pkg.a"}


def test_the_circle_finder_sees_a_module_loaded_by_importlib_import_module(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import importlib\n\ndef late():\n    return importlib.import_module('pkg.b')\n")
    (pkg / "b.py").write_text("from importlib import import_module\nimport_module('pkg.a')\nimport_module(NAME)\n")
    assert circles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


def test_an_import_only_for_type_checking_closes_no_circle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nelse:\n    import json\n"
    )
    assert circles(import_graph(tmp_path, "pkg")) == []


def test_the_circle_finder_reads_the_old_cache_hub_circle_as_one() -> None:
    graph = {"llmprep.artifacts.cache": {"llmprep.artifacts.hub"}, "llmprep.artifacts.hub": {"llmprep.artifacts.cache"}}
    assert circles(graph) == [["llmprep.artifacts.cache", "llmprep.artifacts.hub"]]


# --------------------------------------------------------------------------- docs/architecture.md


def test_the_architecture_page_names_every_folder_and_top_level_module_of_the_package() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    entries = [p for p in PACKAGE.iterdir() if p.name != "__pycache__" and p.name not in ("__init__.py", "py.typed")]
    # A folder as `llmprep/<folder>/…`, a module as `llmprep/<module>.py` or, in a row of its layer, `<module>.py`.
    missing = sorted(
        p.name
        for p in entries
        if (
            f"`llmprep/{p.name}/" not in page
            if p.is_dir()
            else f"`{p.name}`" not in page and f"`llmprep/{p.name}`" not in page
        )
    )
    assert missing == [], f"docs/architecture.md does not name {missing}: add a line for each"


def test_the_architecture_page_states_the_line_limit_this_file_enforces() -> None:
    assert f"No module over {MAX_LINES} lines" in (ROOT / "docs" / "architecture.md").read_text()

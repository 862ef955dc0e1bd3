"""The package's shape: no import cycles between its modules, and no module past 400 lines.

Imports are read with ``ast``, function-level ones included (a cycle through a lazy import still ties two
modules together); ``if TYPE_CHECKING:`` blocks are left out, since they never run. ``from pkg import name``
counts as an import of ``pkg.name`` when that is a module, else of ``pkg`` itself. A package's ``__init__``
that Python runs before a submodule is not counted: only what a module names.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "contrique_video"
MAX_LINES = 400


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    mods = modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            edges |= {t for t in targets if t in mods and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "contrique_video.backends.autotune" in graph["contrique_video.backends"]  # inside auto_choice
    assert "contrique_video.models.contrique" in graph["contrique_video.models.families"]  # inside builders
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(ROOT)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


MAX_PARAMETERS = 12


def wide_functions(package: Path = PACKAGE, limit: int = MAX_PARAMETERS) -> list[str]:
    """Functions (methods too) taking more than ``limit`` parameters; ``self``/``cls`` are not counted, ``*args`` and
    ``**kwargs`` count as one each (issue #27: group options into dataclasses instead)."""
    wide = []
    for name, path in modules(package).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            params = [p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
            count = len(params) - (params[:1] in (["self"], ["cls"])) + bool(a.vararg) + bool(a.kwarg)
            if count > limit:
                wide.append(f"{name}.{node.name}: {count} parameters")
    return wide


def test_no_function_takes_more_than_twelve_parameters():
    assert wide_functions() == []


def test_the_parameter_count_sees_a_wide_function(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("class C:\n    def f(self, a, b, *, c, d=1, **e): ...\n"
                              "def g(a, b, c, d, e, f, g, h, i, j, k, l, m): ...\n")
    assert wide_functions(pkg, limit=5) == ["pkg.m.g: 13 parameters"]
    assert wide_functions(pkg, limit=12) == ["pkg.m.g: 13 parameters"]

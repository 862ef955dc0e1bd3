"""Layers that point one way: a package imports only from its own layer or the layers below, and packages of
one layer never import each other in a cycle.

Every import counts, module-level and function-level (read with ``ast`` by test_layout's graph), since a lazy
import still ties two layers together. Top to bottom:

    cli, __main__                     parses options, calls the API, prints
    runs, encoding, training          orchestration: batches and logs, encodes and ladders, fitting
    api                               the Scorer: decode -> backend -> pool -> head
    backends                          inference engines for a model
    models                            networks, cards, heads, transforms
    decode                            media -> frames
    errors, features, pooling, cache, files, extras, ffmpeg, timing, the package's __init__
                                      leaves: they import nothing from the package but each other
"""

from __future__ import annotations

from pathlib import Path

from test_layout import PACKAGE, find_cycle, import_graph

LAYERS: list[set[str]] = [
    {"cli", "__main__"},
    {"runs", "encoding", "training"},
    {"api"},
    {"backends"},
    {"models"},
    {"decode"},
    {"errors", "features", "pooling", "cache", "files", "extras", "ffmpeg", "timing", "__init__"},
]

# Known violations, to shrink to nothing. Each names the module edge and why it is still here.
ALLOWED: dict[tuple[str, str], str] = {}


def component(module: str) -> str:
    """The top-level package or module of a dotted name: ``contrique_video.runs.logs`` -> ``runs``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(name: str, layers: list[set[str]]) -> int:
    for i, members in enumerate(layers):
        if name in members:
            return i
    raise AssertionError(f"{name!r} sits in no layer: add it to LAYERS in tests/test_layers.py")


def violations(graph: dict[str, set[str]], layers: list[set[str]],
               allowed: dict[tuple[str, str], str] | None = None) -> list[str]:
    """Upward imports (module edges) and cycles between packages, less the allowed edges."""
    allowed = allowed or {}
    found = []
    packages: dict[str, set[str]] = {}
    for module, targets in sorted(graph.items()):
        src = component(module)
        packages.setdefault(src, set())
        for target in sorted(targets):
            dst = component(target)
            if dst == src or (module, target) in allowed:
                continue
            packages[src].add(dst)
            if layer_of(dst, layers) < layer_of(src, layers):
                found.append(f"upward import: {module} -> {target} ({src} sits below {dst})")
    for name in packages:
        layer_of(name, layers)
    for targets in packages.values():
        for t in targets:
            packages.setdefault(t, set())
    if cycle := find_cycle(packages):
        found.append("cycle between packages: " + " -> ".join(cycle))
    return found


def test_layers_point_one_way():
    problems = violations(import_graph(), LAYERS, ALLOWED)
    assert not problems, "\n".join(problems)


def test_the_allowed_violations_still_exist():
    """An entry that was fixed leaves the list, so the list only shrinks."""
    graph = import_graph()
    stale = [edge for edge in ALLOWED if edge[1] not in graph.get(edge[0], set())]
    assert not stale, f"fixed, remove from ALLOWED: {stale}"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "contrique_video"


def test_an_upward_import_inside_a_function_fails(tmp_path):
    package = write(tmp_path, {
        "contrique_video/__init__.py": "",
        "contrique_video/api.py": "from contrique_video.decode import frames\n",
        "contrique_video/decode/__init__.py": "",
        "contrique_video/decode/frames.py": "def f():\n    from contrique_video import api\n    return api\n",
    })
    problems = violations(import_graph(package), LAYERS)
    assert any("upward import: contrique_video.decode.frames -> contrique_video.api" in p for p in problems), problems
    assert any(p.startswith("cycle between packages") for p in problems), problems
    assert not violations(import_graph(package), LAYERS, {("contrique_video.decode.frames", "contrique_video.api"): ""})


def test_a_cycle_within_one_layer_fails(tmp_path):
    package = write(tmp_path, {
        "contrique_video/__init__.py": "",
        "contrique_video/runs/__init__.py": "from . import logs\n",
        "contrique_video/runs/logs.py": "",
        "contrique_video/encoding/__init__.py": "",
        "contrique_video/encoding/ladder.py": "import contrique_video.runs.logs\n",
        "contrique_video/runs/batch.py": "from ..encoding.ladder import x\n",
    })
    assert violations(import_graph(package), LAYERS) == [
        "cycle between packages: encoding -> runs -> encoding"]


def test_the_real_package_with_an_upward_import_added_fails(tmp_path):
    """The check on the real tree: one extra lazy import from backends up to api is caught."""
    import shutil

    copy = tmp_path / "contrique_video"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("assets", "__pycache__"))
    assert not violations(import_graph(copy), LAYERS, ALLOWED)
    (copy / "backends" / "upward.py").write_text("def f():\n    from contrique_video.api import Scorer\n")
    assert violations(import_graph(copy), LAYERS, ALLOWED) == [
        "upward import: contrique_video.backends.upward -> contrique_video.api (backends sits below api)",
        "cycle between packages: api -> backends -> api"]


def test_a_package_outside_every_layer_is_reported(tmp_path):
    package = write(tmp_path, {"contrique_video/__init__.py": "", "contrique_video/newthing.py": "",
                               "contrique_video/api.py": "from contrique_video import newthing\n"})
    try:
        violations(import_graph(package), LAYERS)
    except AssertionError as exc:
        assert "'newthing' sits in no layer" in str(exc)
    else:
        raise AssertionError("an unplaced package passed")


def test_the_lab_and_the_product_stay_apart():
    """Nothing in the package or the tests reaches into experiments/, and no script or experiment reaches into
    tests/ (their helpers are not an API)."""
    import ast

    root = PACKAGE.parent
    test_helpers = {p.stem for p in (root / "tests").glob("*.py")}
    for folder in ("scripts", "experiments"):
        for path in sorted((root / folder).glob("*.py")):
            text = path.read_text()
            assert '"tests"' not in text and "'tests'" not in text, f"{path.name} puts tests/ on its path"
            names = {a.name.split(".")[0] for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Import) for a in n.names}
            names |= {(n.module or "").split(".")[0] for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom)}
            assert not names & test_helpers, f"{folder}/{path.name} imports test helpers {names & test_helpers}"
    for path in [*PACKAGE.rglob("*.py"), *(root / "tests").rglob("*.py")]:
        if path.name != "test_layers.py":
            assert "experiments" not in path.read_text(), f"{path.relative_to(root)} names experiments/"

"""Every third-party import of the package is declared in pyproject.toml (core or an extra), every optional
package names its extra, and a missing one gives one line that says which extra to install."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib

import pytest
from test_layout import PACKAGE, ROOT

from contrique_video.errors import UnsupportedError
from contrique_video.extras import EXTRAS, MissingExtraError, require

# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn", "skimage": "scikit-image", "distributed": "dask",
                 "imageio_ffmpeg": "imageio-ffmpeg", "decord": "decord2"}
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def name_of(requirement: str) -> str:
    for sep in "[<>=!; ":
        requirement = requirement.split(sep)[0]
    return requirement.lower()


def third_party_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "contrique_video":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_is_declared():
    core = {name_of(r) for r in PROJECT["dependencies"]}
    extras = {extra: {name_of(r) for r in reqs} for extra, reqs in PROJECT["optional-dependencies"].items()}
    undeclared = {}
    for module, files in third_party_imports().items():
        dist = DISTRIBUTIONS.get(module, module).lower()
        if module in EXTRAS:
            extra = EXTRAS[module][0]
            assert dist in extras[extra], f"{module} is said to come with [{extra}], which does not list {dist}"
        elif dist not in core:
            undeclared[module] = sorted(files)
    assert not undeclared, f"imported but not declared as a core dependency or an extra in EXTRAS: {undeclared}"


def test_optional_packages_are_not_core():
    core = {name_of(r) for r in PROJECT["dependencies"]}
    assert not {DISTRIBUTIONS.get(m, m).lower() for m in EXTRAS} & core
    assert "scikit-image" not in core


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what an uninstalled package looks like to import
    with pytest.raises(MissingExtraError) as err:
        require("pyarrow", "--parquet")
    assert str(err.value) == "--parquet needs pyarrow, which is not installed: pip install 'contrique-video[parquet]'"
    assert isinstance(err.value, UnsupportedError)


def test_a_command_missing_an_extra_says_which_in_one_line(tmp_path):
    """`score --parquet` without pyarrow: a usage error (exit 2) before any work, one line naming [parquet], not a
    traceback; `bench` without
    scikit-image (its test frames), caught by the CLI where the import happens: one line naming [train]."""
    from media import make_clip

    clip = make_clip(tmp_path / "c.mp4", frames=4)

    def without(module, *args):
        blocked = (f"import sys; sys.modules[{module!r}] = None; from contrique_video.cli import main; "
                   "main(sys.argv[1:])")
        return subprocess.run([sys.executable, "-c", blocked, *map(str, args)], capture_output=True, text=True,
                              timeout=300)

    run = without("pyarrow", "-q", "score", clip, "--frames", "2", "--backend", "torch", "--parquet",
                  tmp_path / "f.parquet")
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "pip install 'contrique-video[parquet]'" in run.stderr
    run = without("skimage", "-q", "bench", "--size", "96x64", "--frames", "1", "--repeats", "1", "--no-memory",
                  "--candidates", "torch:fp32")
    assert run.returncode == 1, run.stderr
    assert run.stderr.strip().splitlines() == [
        "contrique-video: error: contrique-video bench needs scikit-image, which is not installed: "
        "pip install 'contrique-video[train]'"]


@pytest.mark.parametrize("figures, asked", [(["--plot", "p.png"], "--plot"),
                                            (["--report", "r.png", "--compare", "c.svg"], "--report")])
def test_a_figure_asked_for_without_matplotlib_is_a_usage_error_before_any_work(tmp_path, monkeypatch, figures,
                                                                              asked):
    from click.testing import CliRunner

    import contrique_video.cli.score as score_cli
    from contrique_video.cli import main

    def no_work(model):
        raise AssertionError("the model was loaded before the usage error")

    monkeypatch.setattr(score_cli, "open_scorer", no_work)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"")
    figures = [str(tmp_path / a) if a.endswith(("png", "svg")) else a for a in figures]
    res = CliRunner().invoke(main, ["-q", "score", str(clip), *figures, *(["--reference", str(clip)] if
                                                                          "--compare" in figures else [])])
    assert res.exit_code == 2 and res.stderr.splitlines() == [
        f"contrique-video: error: {asked} needs matplotlib, which is not installed: pip install 'contrique-video[plots]'"]


def test_matplotlib_is_an_extra():
    core = {name_of(r) for r in PROJECT["dependencies"]}
    extras = PROJECT["optional-dependencies"]
    assert "matplotlib" not in core and "matplotlib>=3.7" in extras["plots"]
    assert "plots" in extras["test"][1]

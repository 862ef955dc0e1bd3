"""The command-line interface itself: bad option values are usage errors found while parsing (exit 2, before
any model loads), and every option of every command says what it does."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

import contrique_video.api
from contrique_video.cli import main


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command gets as far as loading a model (seconds with the built-in one)."""

    def refuse(*args, **kwargs):
        pytest.fail("the model was loaded before the usage error was found")

    monkeypatch.setattr(contrique_video.api, "Scorer", refuse)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("args, option", [
    (["score", "in.mp4", "--frames", "0"], "--frames"),
    (["score", "in.mp4", "--fps", "-1"], "--fps"),
    (["score", "in.mp4", "--every", "0"], "--every"),
    (["score", "in.mp4", "--start", "-2"], "--start"),
    (["score", "in.mp4", "--duration", "0"], "--duration"),
    (["score", "in.mp4", "--output", "scores.txt"], "--output"),
    (["score", "in.mp4", "--output", "/missing/dir/scores.jsonl"], "--output"),
    (["score", "in.mp4", "--csv", "/missing/dir/frames.csv"], "--csv"),
    (["score", "in.mp4", "--plot", "/missing/dir/p.png"], "--plot"),
    (["score", "in.mp4", "--report", "/missing/dir/r.png"], "--report"),
    (["score", "in.mp4", "--log", "/missing/dir/l.json"], "--log"),
    (["score", "in.mp4", "--plot", "p.txt"], "--plot"),
    (["score", "in.mp4", "--parquet", "/missing/dir/all.parquet"], "--parquet"),
    (["features", "in.mp4", "--output", "f.txt"], "--output"),
    (["features", "in.mp4", "--every", "0", "--output", "f.npy"], "--every"),
    (["ladder", "in.mp4", "--crf", "40:20:4", "--output", "out"], "--crf"),
    (["ladder", "in.mp4", "--crf", "99", "--output", "out"], "--crf"),
    (["ladder", "in.mp4", "--crf", "30", "--encoder", "libsvtav1", "--crf", "0", "--output", "out"], "--crf"),
    (["crf-search", "in.mp4", "--target", "150"], "--target"),
    (["crf-search", "in.mp4", "--target", "-5"], "--target"),
    (["crf-search", "in.mp4", "--target", "50", "--min-crf", "40", "--max-crf", "20"], "--min-crf 40"),
    (["crf-search", "in.mp4", "--target", "50", "--min-crf", "60"], "--min-crf"),
    (["crf-search", "in.mp4", "--target", "50", "--max-crf", "70", "--encoder", "libx265"], "--max-crf"),
])
def test_bad_values_are_usage_errors_before_the_model_loads(no_model, args, option):
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and option in err[0] and "Traceback" not in res.output, res.stderr
    assert res.stdout == ""


def test_target_range_comes_from_the_head_file(no_model, tmp_path):
    """A head on another scale (here 1..5) sets what --target may be, read from its JSON alone."""
    import numpy as np

    from contrique_video.models.head import LinearHead

    LinearHead(weights=np.zeros(4), intercept=3.0, name="five", features="builtin-v1", trained_on="x", scale="ACR",
               range=(1, 5), higher_is_better=True).save(tmp_path / "five.json")
    res = invoke("crf-search", "in.mp4", "--target", "60", "--head", tmp_path / "five.json")
    assert res.exit_code == 2 and "1..5 of head 'five'" in res.stderr


def walk(group: click.Group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from walk(command, path + (name,))
        else:
            yield " ".join(path + (name,)), command


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {param.opts[0]}" for name, command in walk(main) for param in command.params
               if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()]
    missing += [f"--{p.name}" for p in main.params if isinstance(p, click.Option) and not p.help]
    assert missing == []

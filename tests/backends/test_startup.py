"""``bench --startup`` (contrique_video.backends.startup): what it runs, in which order, on which cache, and how
its ratios are taken against the official path's seconds. A fake runner stands in for the timed processes, so
nothing here depends on how fast anything is; the slow test runs the real processes once."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import av
import pytest
from click.testing import CliRunner

from contrique_video.backends import startup
from contrique_video.cli import main
from contrique_video.errors import ContriqueError

# Seconds (wall, CPU) the fake runner reports, in the order the runs happen.
SECONDS = [(10.0, 8.0), (4.0, 2.0),  # official eager: the clip, then the one image
           (5.0, 4.0), (2.0, 2.0), (1.0, 0.5),  # built-in: first run, warm, one image
           (20.0, 16.0), (8.0, 8.0), (2.0, 1.0)]  # official layout through the CLI


class FakeRunner:
    """Records each command with the files it was given, and returns the next of SECONDS."""

    def __init__(self):
        self.calls = []

    def __call__(self, cmd, env, warmup=0):
        inputs = [Path(a) for a in cmd if a.endswith((".mp4", ".png", ".pt"))]
        assert all(p.is_file() for p in inputs), cmd  # the clip, image and checkpoint exist while they run
        clip = next((p for p in inputs if p.suffix == ".mp4"), None)
        shape = None
        if clip:
            with av.open(str(clip)) as c:
                stream = c.streams.video[0]
                shape = (stream.codec_context.name, stream.height, stream.width, stream.frames)
        self.calls.append({"cmd": cmd, "cache": env["CONTRIQUE_VIDEO_CACHE"], "omp": env.get("OMP_NUM_THREADS"),
                           "warmup": warmup, "clip": shape})
        return SECONDS[len(self.calls) - 1]


@pytest.fixture
def runner(monkeypatch):
    fake = FakeRunner()
    monkeypatch.setattr(startup, "timed", fake)
    return fake


def test_each_run_is_a_fresh_process_on_one_new_cache_with_ratios_against_the_official_path(runner):
    result = startup.measure_startup(threads=2, frames=3, size=(64, 96))
    calls = runner.calls
    assert len(calls) == 8 and len({c["cache"] for c in calls}) == 1
    assert not Path(calls[0]["cache"]).exists()  # a folder of its own, removed afterwards
    assert all(c["omp"] == "2" for c in calls)
    official, cli = calls[:2], calls[2:]
    assert all(c["cmd"][:2] == [sys.executable, "-c"] and c["cmd"][2] == startup.OFFICIAL for c in official)
    assert [c["cmd"][-2:] for c in official] == [["3", "2"], ["1", "2"]]  # frames, threads
    assert all(c["cmd"][:4] == [sys.executable, "-m", "contrique_video", "-q"] for c in cli)
    assert all(c["cmd"][c["cmd"].index("--threads") + 1] == "2" for c in cli)
    assert [c["cmd"][4] for c in cli] == ["score"] * 3 + ["features"] * 3
    assert all("--weights" not in c["cmd"] for c in cli[:3]) and all("--weights" in c["cmd"] for c in cli[3:])
    assert [c["warmup"] for c in calls] == [0, 0, 0, 0, 1, 0, 0, 1]  # one image: warm, the clip: first then warm
    assert calls[0]["clip"] == ("h264", 64, 96, 24)

    rows = result["rows"]
    assert [(r["model"], r["backend"], r["run"]) for r in rows] == [
        ("resnet50", "official eager", "end_to_end"), ("resnet50", "official eager", "startup"),
        ("built-in", "auto", "first_run"), ("built-in", "auto", "warm"), ("built-in", "auto", "startup"),
        ("resnet50", "auto", "first_run"), ("resnet50", "auto", "warm"), ("resnet50", "auto", "startup")]
    # The clip's runs against the official clip (10 s wall, 8 s CPU), one image against the official image (4, 2).
    assert [(r["speedup_wall"], r["speedup_cpu"]) for r in rows] == [
        (1, 1), (1, 1), (2, 2), (5, 4), (4, 4), (0.5, 0.5), (1.25, 1), (2, 2)]
    assert [(r["wall_s"], r["cpu_s"]) for r in rows] == SECONDS
    table = result["table"]
    assert "| built-in | auto | first run (empty cache) | 5.00 | 4.00 | 2.00x | 2.00x |" in table
    assert "| ResNet-50 (official layout) | auto | warm | 8.00 | 8.00 | 1.25x | 1.00x |" in table
    assert "3 frames of a 96x64 H.264 clip" in table and "threads: 2" in table
    json.dumps(result)


def test_without_threads_the_children_keep_the_default(runner, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    startup.measure_startup(frames=1, size=(64, 96))
    assert all(c["omp"] is None and "--threads" not in c["cmd"] for c in runner.calls)
    assert [c["cmd"][-1] for c in runner.calls[:2]] == ["0", "0"]  # the official path: all cores


def test_a_failing_run_is_one_line_naming_it():
    assert all(s > 0 for s in startup.timed([sys.executable, "-c", "pass"], dict(os.environ)))
    with pytest.raises(ContriqueError, match="failed: no model here$"):
        startup.timed([sys.executable, "-c", "import sys; sys.exit('traceback\\nno model here')"], dict(os.environ))


def test_bench_startup_prints_the_table_and_writes_the_rows(runner, monkeypatch, tmp_path):
    monkeypatch.setattr(startup, "measure_startup", functools.partial(startup.measure_startup, size=(64, 96)))
    out = tmp_path / "startup.json"
    res = CliRunner().invoke(main, ["bench", "--startup", "--threads", "2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "| model | path | run | wall s | CPU s | vs official eager (wall) | vs official eager (CPU) |" in res.output
    assert "| built-in | auto | one 64x64 image | 1.00 | 0.50 | 4.00x | 4.00x |" in res.output
    assert "s/frame" not in res.output  # only the start-up table
    saved = json.loads(out.read_text())
    assert len(saved["rows"]) == 8 and saved["threads"] == 2 and saved["table"] in res.output


@pytest.mark.slow
def test_the_real_runs_on_a_small_clip():
    result = startup.measure_startup(threads=1, frames=2, size=(180, 320))
    rows = result["rows"]
    assert [(r["model"], r["run"]) for r in rows][2:] == [
        ("built-in", "first_run"), ("built-in", "warm"), ("built-in", "startup"),
        ("resnet50", "first_run"), ("resnet50", "warm"), ("resnet50", "startup")]
    base = {r["run"]: r for r in rows[:2]}
    for r in rows:
        ref = base["startup" if r["run"] == "startup" else "end_to_end"]
        assert r["wall_s"] > 0 and r["cpu_s"] > 0
        assert r["speedup_wall"] == pytest.approx(ref["wall_s"] / r["wall_s"])
        assert r["speedup_cpu"] == pytest.approx(ref["cpu_s"] / r["cpu_s"])

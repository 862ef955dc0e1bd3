"""The ffmpeg pipe plugin: command rewriting, one-pass score equal to scoring the file, ffmpeg failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from encoding_helpers import real_ffmpeg
from media import make_clip

from contrique_video.api import Scorer
from contrique_video.decode.sampler import Sampling

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "ffmpeg" / "ffmpeg-score"


def plugin(*args, timeout=300):
    return subprocess.run([sys.executable, str(PLUGIN), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("plugin") / "src.mp4", size=(160, 90), frames=24)


def test_output_becomes_a_tee_with_a_nut_pipe():
    run = plugin("--ffmpeg", real_ffmpeg(), "--print-command", "--", "-i", "in.mov", "-c:v", "libx264", "-f", "mp4",
                 "out.bin")
    command = json.loads(run.stdout)
    assert command[1:] == ["-nostdin", "-i", "in.mov", "-c:v", "libx264", "-map", "0:v:0", "-map", "0:a:0?", "-f", "tee",
                           "[f=mp4]out.bin|[f=nut:select=v:onfail=ignore]pipe:1"]
    run = plugin("--ffmpeg", real_ffmpeg(), "--print-command", "--", "-i", "in.mov", "-map", "0", "o.mkv")
    assert json.loads(run.stdout)[-4:] == ["0", "-f", "tee", "o.mkv|[f=nut:select=v:onfail=ignore]pipe:1"]
    run = plugin("--print-command", "--", "-i", "in.mov", "-y")
    assert run.returncode == 2 and "must end with the output file" in run.stderr


def test_one_pass_score_equals_scoring_the_output(clip, tmp_path):
    out = tmp_path / "out.mp4"
    run = plugin("--ffmpeg", real_ffmpeg(), "--every", "2", "--running", "0.5", "--", "-loglevel", "error", "-i", clip,
                 "-c:v", "libx264", "-preset", "ultrafast", "-crf", "35", out)
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["partial"] is False and record["ffmpeg_exit"] == 0 and record["frames_scored"] == 12
    assert "running" in run.stderr
    after = Scorer(backend="torch").score(out, sampling=Sampling("every", 2))
    assert abs(record["score"] - after.score) < 0.1


def test_ffmpeg_failure_is_one_line_and_partial(clip, tmp_path):
    dies = tmp_path / "ffmpeg-dies-late"  # encodes everything, then exits 5: the score is kept, marked partial
    dies.write_text(f'#!/bin/sh\n"{real_ffmpeg()}" "$@"\nexit 5\n')
    dies.chmod(0o755)
    run = plugin("--ffmpeg", dies, "--every", "12", "--", "-loglevel", "error", "-i", clip, "-c:v", "libx264",
                 "-preset", "ultrafast", tmp_path / "o2.mp4")
    assert run.returncode == 1
    record = json.loads(run.stdout)
    assert record["partial"] is True and record["ffmpeg_exit"] == 5 and record["frames_scored"] == 2
    assert "ffmpeg exited with code 5; the frames scored before it are kept (partial)" in run.stderr


def test_help_prints_usage_and_exits_0():
    for flag in ("--help", "-h"):
        run = plugin(flag)
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("usage: ffmpeg-score [OPTIONS] -- FFMPEG_ARGS... OUTPUT")
        assert "--running" in run.stdout and run.stderr == ""
    run = plugin("--fps", "2")  # no `--` and no output: still a usage error
    assert run.returncode == 2 and "usage: ffmpeg-score" in run.stderr

"""``score --display WxH``: every frame scaled to the display size before scoring (as ``ladder --display``),
recorded; a warning when inputs of different sizes are scored at their own sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest
from click.testing import CliRunner
from checkpoints import random_official_checkpoint
from media import make_clip

import contrique_video.api as cv
from contrique_video.cli import main
from contrique_video.models.head import LinearHead


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("display")
    random_official_checkpoint(d / "r18.pt", arch="resnet18")
    rng = np.random.default_rng(0)
    LinearHead(weights=rng.normal(size=1024) * 10, intercept=50.0, name="testhead", features="weights:r18.pt",
               trained_on="random", scale="MOS", range=(0, 100), higher_is_better=True).save(d / "head.json")
    make_clip(d / "small.mp4", size=(96, 64), frames=6, fps=24)
    make_clip(d / "large.mp4", size=(192, 128), frames=6, fps=24)
    return d


def score_json(d, *args) -> tuple[list[dict], list[str]]:
    cmd = [sys.executable, "-m", "contrique_video", "-q", "score", *map(str, args), "--weights", str(d / "r18.pt"),
           "--head", str(d / "head.json"), "--format", "json", "--all"]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, text=True)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr.splitlines()


def test_display_scores_what_ffmpeg_scale_gives(setup, tmp_path):
    """--display 192x128 of a 96x64 clip scores as the same clip upscaled by the ffmpeg CLI (bicubic, lossless),
    not as the clip at its own size; the record says both sizes."""
    d = setup
    (shown,), err = score_json(d, d / "small.mp4", "--display", "192x128")
    (native,), _ = score_json(d, d / "small.mp4")
    by_ffmpeg = tmp_path / "by_ffmpeg.mkv"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(d / "small.mp4"), "-vf",
                    "scale=192:128:flags=bicubic", "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(by_ffmpeg)], check=True)
    (upscaled,), _ = score_json(d, by_ffmpeg)
    assert shown["file"] == str(d / "small.mp4") and err == []
    assert (shown["width"], shown["height"], shown["display"]) == (96, 64, [192, 128])
    assert (native["width"], native["height"], native["display"]) == (96, 64, None)
    assert shown["frames_scored"] == native["frames_scored"] == 6
    assert abs(shown["score"] - upscaled["score"]) < 0.05 * abs(shown["score"] - native["score"])


def test_display_of_the_own_size_changes_nothing(setup):
    d = setup
    (shown,), _ = score_json(d, d / "large.mp4", "--display", "192x128")
    (native,), _ = score_json(d, d / "large.mp4")
    assert shown["score"] == native["score"] and shown["display"] == [192, 128]


def test_mixed_sizes_warn_once_unless_display(setup):
    d = setup
    make_clip(d / "medium.mp4", size=(128, 96), frames=6, fps=24)
    records, err = score_json(d, d / "small.mp4", d / "large.mp4", d / "medium.mp4")
    assert [(r["width"], r["height"]) for r in records] == [(96, 64), (192, 128), (128, 96)]
    assert len(err) == 1 and "96x64, 192x128" in err[0] and "not comparable" in err[0] and "--display" in err[0]
    records, err = score_json(d, d / "small.mp4", d / "large.mp4", "--display", "192x128")
    assert err == [] and [r["display"] for r in records] == [[192, 128], [192, 128]]


def test_python_api_takes_display(setup):
    d = setup
    scorer = cv.Scorer(weights=d / "r18.pt", head=d / "head.json")
    cli, _ = score_json(d, d / "small.mp4", "--display", "192x128")
    api = scorer.score(d / "small.mp4", sampling=cv.Sampling("all"), display=(192, 128))
    assert api.score == pytest.approx(cli[0]["score"], abs=1e-4) and api.display == (192, 128)


@pytest.mark.parametrize("args", [["score", "x.mp4", "--display", "1920"], ["score", "-", "--display", "1920x1080"],
                                  ["ladder", "x.mp4", "-o", ".", "--display", "axb"]])
def test_bad_display_is_a_usage_error(args):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output

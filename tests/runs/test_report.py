"""``score --report``: the worst and best frames are found, decoded again by index (the same pixels the
scorer saw), and drawn with their times and scores beside the curve."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from media import make_clip
from checkpoints import small_model_with_head

from contrique_video.cli import main
from contrique_video.decode.sampler import Sampling
from contrique_video.decode import open_source
from contrique_video.decode.indices import FrameIndices
from contrique_video.runs.report import (
    band,
    decode_frames,
    extremes,
    report_figure,
)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    make_clip(d / "clip.mp4", size=(96, 64), frames=24, content="moving")
    return d


def test_frames_decoded_by_index_are_the_frames_scored(d):
    with open_source(d / "clip.mp4") as src:
        every = {f.index: f.rgb for f in src.frames(Sampling("all", None))}
    got = decode_frames(d / "clip.mp4", [17, 3, 9])
    assert sorted(got) == [3, 9, 17]
    for i, rgb in got.items():
        assert np.array_equal(rgb, every[i])
    assert FrameIndices((5, 2)).describe() == "frames 2, 5"


def test_extremes_and_bands():
    frames = pd.DataFrame({"score": [50.0, 10.0, 90.0, 30.0, 70.0]})
    assert extremes(frames) == ([1, 3], [2, 4])
    assert extremes(frames, higher_is_better=False) == ([2, 4], [1, 3])
    assert extremes(frames.iloc[:3], count=2) == ([1, 0], [2])  # few frames: never shown twice
    assert [band(s) for s in (5, 20, 45, 79.9, 80, 104)] == ["bad", "poor", "fair", "good", "excellent", "excellent"]


def test_report_marks_worst_and_best_with_time_and_score(d):
    frames = pd.DataFrame({"frame": [0, 6, 12, 18], "pts_time": [0.0, 0.25, 0.5, 0.75], "score": [62.0, 31.5, 48.0, 77.25]})
    result = SimpleNamespace(file=str(d / "clip.mp4"), frames=frames, score=54.7, scale="MOS", higher_is_better=True)
    fig = report_figure([result, result])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("clip.mp4: 54.7 (fair), 4 frames scored, worst 31.5, best 77.2")
    assert titles[1:5] == ["1. worst: 31.5\nframe 6 at 0.25 s", "2. worst: 48.0\nframe 12 at 0.50 s",
                           "3. best: 77.2\nframe 18 at 0.75 s", "4. best: 62.0\nframe 0 at 0.00 s"]
    assert all(ax.get_images() for ax in fig.axes[1:5])  # each thumbnail shows a decoded picture
    assert fig.axes[0].get_ylim() == fig.axes[5].get_ylim()


def test_cli_report_writes_one_page(d, tmp_path):
    small_model_with_head(tmp_path)
    out = tmp_path / "report.png"
    res = CliRunner().invoke(main, ["-q", "score", str(d / "clip.mp4"), "--weights", str(tmp_path / "r18.pt"),
                                    "--head", str(tmp_path / "head.json"), "--every", "6", "--report", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(d / "clip.mp4", tmp_path / "copy.mp4")
    res = CliRunner().invoke(main, ["-q", "score", str(d / "clip.mp4"), str(tmp_path / "copy.mp4"), "--weights",
                                    str(tmp_path / "r18.pt"), "--head", str(tmp_path / "head.json"), "--frames", "2",
                                    "--report", str(tmp_path / "r-{index}.png")], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in tmp_path.glob("r-*.png")) == ["r-0.png", "r-1.png"]  # one image per input
    before = (d / "clip.mp4").read_bytes()
    res = CliRunner().invoke(main, ["-q", "score", str(d / "clip.mp4"), "--report", str(d / "clip.mp4")],
                             catch_exceptions=False)
    assert res.exit_code == 2 and "use a .png, .pdf, .svg file name" in res.stderr  # refused before any write
    assert (d / "clip.mp4").read_bytes() == before


def test_wide_frames_get_a_one_to_one_centre_crop(tmp_path):
    from contrique_video.runs.report import THUMB_WIDTH, centre_crop, thumbnail

    rgb = np.arange(1080 * 1920 * 3, dtype=np.uint32).reshape(1080, 1920, 3).astype(np.uint8)
    crop = centre_crop(rgb)
    assert crop.shape == (270, THUMB_WIDTH, 3) and thumbnail(rgb).shape == (270, THUMB_WIDTH, 3)
    assert np.array_equal(crop, rgb[405:675, 720:1200])  # the middle, pixel for pixel
    small = rgb[:64, :96]
    assert np.array_equal(centre_crop(small), small) and np.array_equal(thumbnail(small), small)
    clip = make_clip(tmp_path / "wide.mp4", size=(640, 360), frames=4, content="moving")
    frames = pd.DataFrame({"frame": [0, 1, 2, 3], "pts_time": [0.0, 0.04, 0.08, 0.12], "score": [50.0, 40.0, 60.0, 55.0]})
    fig = report_figure([SimpleNamespace(file=str(clip), frames=frames, score=51.0, scale="MOS", higher_is_better=True)])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1:3] == ["1. worst: 40.0\nframe 1 at 0.04 s", "1. centre crop, full resolution"]
    assert fig.axes[2].get_images()[0].get_array().shape[:2] == (270, 480)


@pytest.mark.parametrize("option", ["--report", "--compare"])
def test_a_figure_name_matplotlib_cannot_write_is_a_usage_error(d, option):
    res = CliRunner().invoke(main, ["-q", "score", str(d / "clip.mp4"), option, "out.txt"])
    assert res.exit_code == 2
    assert f"Invalid value for '{option}': out.txt: use a .png, .pdf, .svg file name" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1

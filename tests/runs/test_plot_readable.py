"""Plots read at a glance: one y range on every panel, bitrate ticks in plain kbps, and every rendition
line drawn above the hull."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from contrique_video.encoding.ladder import Ladder, Rendition, mark
from contrique_video.runs.plot import (
    frames_figure,
    ladder_figure,
    plot_ladder,
    shared_range,
)


def result(name: str, base: float) -> SimpleNamespace:
    t = np.arange(20) / 10
    frames = pd.DataFrame({"frame": range(20), "pts_time": t, "score": base + 3 * np.sin(4 * t)})
    return SimpleNamespace(file=name, frames=frames, score=float(frames["score"].mean()), scale="MOS",
                           higher_is_better=True)


def test_every_panel_has_the_same_0_100_axis():
    fig = frames_figure([result("good.mp4", 75), result("bad.mp4", 20)])
    limits = {ax.get_ylim() for ax in fig.axes}
    assert len(limits) == 1
    lo, hi = limits.pop()
    assert lo <= 0 < 100 <= hi and hi - lo < 110
    assert shared_range([[105.0, 50.0]])[1] > 105  # a score above 100 widens it
    assert shared_range([[1.0, 5.0]], (1, 5)) == pytest.approx((0.88, 5.12))  # an explicit range (a 1-5 MOS head)
    assert shared_range([[-500.0, 800.0]])[0] < -500  # far off 0-100: the data's own span, shared


def ladder() -> Ladder:
    lad = Ladder("in.mp4", "libx264", (1920, 1080), "clive", "MOS", True)
    for height, share, slope in ((1080, 1.0, 0.9), (720, 0.6, 1.0), (360, 0.25, 0.8)):
        for crf in (24, 30, 36, 42):
            kbps = 8000 * share * 2 ** (-(crf - 24) / 6)
            score = 10 + 8 * np.log(kbps / 50) * slope
            lad.renditions.append(Rendition(height, height * 16 // 9, crf, int(kbps * 125), kbps, score, score - 3))
    mark(lad, 4)
    return lad


def test_ladder_bitrate_ticks_are_plain_kbps_and_renditions_sit_above_the_hull(tmp_path):
    fig = ladder_figure(ladder())
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert {"500", "1,000", "2,000", "5,000"} <= set(labels)
    assert not any("10^" in s or "times" in s or "$" in s for s in labels)
    lines = {line.get_label(): line for line in ax.get_lines()}
    hull = lines["convex hull"]
    assert hull.get_alpha() < 1
    for name in ("1080p", "720p", "360p"):
        assert lines[name].get_zorder() > hull.get_zorder()  # the 720p line runs along the hull: drawn on top
    assert plot_ladder(ladder(), tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"


def test_ladder_with_vmaf_has_a_vmaf_panel_beside_on_the_same_y_range():
    lad = ladder()
    for r in lad.renditions:
        r.vmaf = min(100.0, r.score + 30)
    lad.reference = "master.mov"
    fig = ladder_figure(lad)
    ours, theirs = fig.axes
    assert ours.get_ylim() == theirs.get_ylim()
    lo, hi = ours.get_ylim()
    assert lo <= min(r.score for r in lad.renditions) and hi >= 100
    assert theirs.get_ylabel() == "VMAF against master.mov"
    lines = {line.get_label(): line for line in theirs.get_lines()}
    assert {"1080p", "720p", "360p"} <= set(lines) and "convex hull" not in lines  # the hull is of our score
    vmaf_1080 = sorted(r.vmaf for r in lad.renditions if r.height == 1080)
    assert sorted(lines["1080p"].get_ydata()) == pytest.approx(vmaf_1080)
    assert len(ladder_figure(ladder()).axes) == 1  # no VMAF measured: one panel

"""Plots: worst segments on known frame scores, and ``score --plot`` writing a PNG."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner
from media import make_clip, make_image

from contrique_video.cli import main
from contrique_video.runs.plot import worst_segments

PNG = b"\x89PNG\r\n\x1a\n"


def test_worst_segments_on_known_scores():
    t = [i / 10 for i in range(100)]  # 10 s at 10 fps, tenths of 0.99 s
    s = [50.0] * 100
    s[30:40] = [20.0] * 10  # the fourth tenth is worst
    s[70:80] = [30.0] * 10
    frames = pd.DataFrame({"pts_time": t, "score": s})
    worst = worst_segments(frames, count=2)
    assert [round(w[2], 1) for w in worst] == [20.0, 30.0]
    assert worst[0][0] == pytest.approx(2.97) and worst[0][1] == pytest.approx(3.96)
    assert [round(w[2], 1) for w in worst_segments(frames, higher_is_better=False, count=1)] == [50.0]
    assert worst_segments(frames.iloc[:1]) == []


def test_score_plot_writes_png(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", size=(96, 64), frames=12)
    res = CliRunner().invoke(main, ["-q", "score", str(clip), "--every", "3", "--plot", str(tmp_path / "f.png")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG
    res = CliRunner().invoke(main, ["-q", "score", str(clip), "--plot", str(clip)], catch_exceptions=False)
    assert res.exit_code == 2 and "'--plot'" in res.stderr and ".png, .pdf, .svg" in res.stderr  # before scoring
    still = make_image(tmp_path / "still.png", size=(96, 80))
    res = CliRunner().invoke(main, ["-q", "score", str(still), "--plot", str(still)], catch_exceptions=False)
    assert res.exit_code == 1 and "is also an input" in res.stderr

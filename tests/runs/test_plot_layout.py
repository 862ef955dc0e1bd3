"""Plot layouts fit their text (issue #29): in --compare the table's texts stay inside their cells and the
numbered scatter labels do not overlap; --report has no blank band between thumbnails and crops. Checked on
the drawn figure (matplotlib's renderer) and on the written PNG's pixels."""

from __future__ import annotations

from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from media import make_clip
from PIL import Image

from contrique_video.runs.report import compare_figure, write_report


def with_vmaf(file: str, seed: int, n: int = 24) -> SimpleNamespace:
    """A scored input whose frames cluster tightly (as the frames of one clip do), with VMAF beside."""
    rng = np.random.default_rng(seed)
    frames = pd.DataFrame({"frame": range(n), "pts_time": np.arange(n) / 24, "score": 50 + rng.normal(0, 3, n),
                           "vmaf": 80 + rng.normal(0, 1, n)})
    return SimpleNamespace(file=file, frames=frames, score=float(frames["score"].mean()), scale="MOS",
                           higher_is_better=True)


def drawn_compare():
    results = [with_vmaf("/renditions/a_very_long_rendition_name_1920x1080_x264_crf28_slow_preset_tune_film.mp4", 1),
               with_vmaf("/renditions/b_other_rendition_name_1280x720_x265_crf32_medium_preset.mp4", 2)]
    fig = compare_figure(results)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return fig, canvas.get_renderer()


def test_compare_table_texts_fit_their_cells():
    fig, renderer = drawn_compare()
    (table,) = [t for ax in fig.axes for t in ax.tables]
    cells = table.get_celld()
    assert len(cells) == 9 * 9
    for (row, col), cell in cells.items():
        box, text = cell.get_window_extent(renderer), cell.get_text().get_window_extent(renderer)
        assert box.x0 <= text.x0 and text.x1 <= box.x1 and box.y0 <= text.y0 and text.y1 <= box.y1, \
            (row, col, cell.get_text().get_text())
    names = [cells[row, 1].get_text().get_text() for row in range(1, 9)]
    assert all(n.endswith(".mp4") for n in names)  # a cut name keeps its end (the settings), after an ellipsis


def test_compare_scatter_labels_do_not_overlap():
    fig, renderer = drawn_compare()
    scatter = next(ax for ax in fig.axes if ax.get_xlabel() == "VMAF")
    labels = [t for t in scatter.texts if t.get_text().isdigit()]
    assert sorted(t.get_text() for t in labels) == [str(n) for n in range(1, 9)]
    boxes = [Text.get_window_extent(t, renderer) for t in labels]
    inside = scatter.get_window_extent(renderer)
    for a, b in combinations(boxes, 2):
        assert not a.overlaps(b)
    for box in boxes:
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1


def tallest_blank_band(png) -> float:
    """The tallest band of rows that are all background, in inches of the written page."""
    image = Image.open(png)
    pixels = np.asarray(image.convert("RGB"))
    blank = (pixels >= 250).all(axis=(1, 2))
    run = best = 0
    for row in blank:
        run = run + 1 if row else 0
        best = max(best, run)
    return best / image.info["dpi"][1]


def test_report_has_no_blank_band(tmp_path):
    """The report had 0.65-0.8 inch of blank page between the thumbnails and the crops; between two inputs,
    under a title, under the curve's axis label there is at most half an inch."""
    for size in [(960, 540), (640, 480), (320, 180)]:  # wide frames (with crops), 4:3, small (no crops)
        clip = make_clip(tmp_path / f"clip_{size[0]}.mp4", size=size, frames=8, content="moving")
        frames = pd.DataFrame({"frame": range(8), "pts_time": np.arange(8) / 24,
                               "score": [50, 41, 60, 55, 47, 52, 58, 44.0]})
        result = SimpleNamespace(file=str(clip), frames=frames, score=51.0, scale="MOS", higher_is_better=True)
        for results in ([result], [result, result]):
            png = write_report(results, tmp_path / f"report_{size[0]}.png")
            assert tallest_blank_band(png) < 0.5, (size, len(results))

"""``score --report``: one PNG page that shows what the score saw.

A number alone does not tell an engineer whether it is right; the frames behind it do. Each input gets
its per-frame curve (with the pooled score, the quality bands of the built-in head's scale, and the worst
and best frames marked) and thumbnails of those worst and best frames with their times and scores. The
thumbnails are decoded again from the file by frame index, in one sequential pass that converts only
those frames, so the report costs a decode, not another scoring run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image

from contrique_video.decode.indices import FrameIndices
from contrique_video.errors import ContriqueError
from contrique_video.runs.bands import BANDS, band
from contrique_video.runs.inputs import shorten
from contrique_video.runs.plot import shared_range, worst_segments

log = logging.getLogger("contrique_video")
BAND_COLOURS = ["#d73027", "#fc8d59", "#fee08b", "#d9ef8b", "#91cf60"]
THUMB_WIDTH = 480
FILE_CHARS = 40  # file names in the --compare table: longer ones keep their end, after an ellipsis


def extremes(frames, higher_is_better: bool = True, count: int = 2) -> tuple[list[int], list[int]]:
    """Row positions of the ``count`` worst and ``count`` best frames (worst first; best first), distinct."""
    order = np.argsort(frames["score"].to_numpy(float), kind="stable")
    if higher_is_better:
        worst, best = list(order[:count]), list(order[::-1][:count])
    else:
        worst, best = list(order[::-1][:count]), list(order[:count])
    best = [b for b in best if b not in worst]
    return [int(i) for i in worst], [int(i) for i in best]


def decode_frames(path: str | os.PathLike, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """RGB pixels of the frames with these indices (presentation order), at full size."""
    from contrique_video.decode import open_source

    with open_source(path) as src:
        return {frame.index: frame.rgb for frame in src.frames(FrameIndices(tuple(indices)))}


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The whole frame, at most :data:`THUMB_WIDTH` wide."""
    img = Image.fromarray(rgb)
    if img.width > THUMB_WIDTH:
        img = img.resize((THUMB_WIDTH, max(1, round(img.height * THUMB_WIDTH / img.width))), Image.BICUBIC)
    return np.asarray(img)


def centre_crop(rgb: np.ndarray) -> np.ndarray:
    """The middle of the frame at one image pixel per frame pixel, the thumbnail's shape: compression
    damage that a shrunk thumbnail hides shows here."""
    h, w = rgb.shape[:2]
    cw = min(w, THUMB_WIDTH)
    ch = min(h, max(1, round(cw * h / w)))
    top, left = (h - ch) // 2, (w - cw) // 2
    return rgb[top:top + ch, left:left + cw]


# The report's layout, in inches. Axes are placed at exact positions rather than in a grid, so each picture
# row is exactly as tall as its pictures are at the column width: a grid row sized by ratios leaves a blank
# band above and below pictures of another shape.
DPI = 150
COLUMN = THUMB_WIDTH / DPI  # width of a thumbnail column: a centre crop is drawn one pixel per page pixel
GAP = 0.12  # between thumbnail columns
MARGIN = (0.9, 0.9)  # left (y label) and right (band names) of the curve
CURVE = 2.4  # height of a curve
SPACE = {"title": 0.45, "below_curve": 0.95, "below_thumbs": 0.35, "between_inputs": 0.2}


def report_figure(results: Sequence, y_range: tuple[float, float] | None = None, thumbs: int = 2) -> Figure:
    """One block per input: the per-frame curve across the page, and below it the worst and the best
    ``thumbs`` frames (whole, and a 1:1 centre crop when the frames are wider than a thumbnail). Every
    curve shares one y axis (0-100 unless a score falls outside it)."""
    lo, hi = shared_range([r.frames["score"] for r in results] + [[r.score] for r in results], y_range)
    blocks = []
    for r in results:
        frames = r.frames.reset_index(drop=True)
        worst, best = extremes(frames, r.higher_is_better, thumbs)
        picked = [("worst", i) for i in worst] + [("best", i) for i in best]
        blocks.append((r, frames, picked, _thumbnails(r.file, [int(frames.at[i, "frame"]) for _, i in picked])))
    detail = any(rgb.shape[1] > THUMB_WIDTH for *_, pixels in blocks for rgb in pixels.values())
    cols = 2 * thumbs
    width = MARGIN[0] + cols * COLUMN + (cols - 1) * GAP + MARGIN[1]
    placed = []  # (what, block, column, top, height) in inches from the top
    top = 0.0
    for k, (*_, pixels) in enumerate(blocks):
        shape = next(iter(pixels.values())).shape if pixels else (9, 16)
        row = COLUMN * shape[0] / shape[1]  # a picture row as tall as its pictures at the column width
        top += SPACE["title"]
        placed.append(("curve", k, None, top, CURVE))
        top += CURVE + SPACE["below_curve"]
        crops = top + row + SPACE["below_thumbs"]
        for n in range(cols):  # each frame's thumbnail, then its crop below
            placed += [("thumb", k, n, top, row)] + ([("crop", k, n, crops, row)] if detail else [])
        top = (crops + row if detail else top + row) + SPACE["between_inputs"]
    height = top
    fig = Figure(figsize=(width, height))

    def axes(column, top, tall):
        left = MARGIN[0] if column is None else MARGIN[0] + column * (COLUMN + GAP)
        wide = width - sum(MARGIN) if column is None else COLUMN
        return fig.add_axes((left / width, 1 - (top + tall) / height, wide / width, tall / height))

    for what, k, n, top, tall in placed:
        r, frames, picked, pixels = blocks[k]
        if what == "curve":
            _curve(axes(None, top, tall), r, frames, picked, lo, hi)
        elif n < len(picked):
            kind, i = picked[n]
            index = int(frames.at[i, "frame"])
            if what == "thumb":
                view, title = thumbnail, (f"{n + 1}. {kind}: {frames.at[i, 'score']:.1f}\n"
                                          f"frame {index} at {frames.at[i, 'pts_time']:.2f} s")
            else:
                view, title = centre_crop, f"{n + 1}. centre crop, full resolution"
            _picture(axes(n, top, tall), pixels.get(index), view, title,
                     "tab:red" if kind == "worst" else "tab:green")
    return fig


def _curve(ax, r, frames: pd.DataFrame, picked: list, lo: float, hi: float) -> None:
    """The per-frame curve of one input, with its quality bands, pooled score and numbered extremes."""
    scaled_0_100 = lo <= 0 and hi >= 100 and r.higher_is_better
    if scaled_0_100:
        for (b_lo, b_hi, name), colour in zip(BANDS, BAND_COLOURS):
            ax.axhspan(b_lo, b_hi, color=colour, alpha=0.18, lw=0)
            ax.text(1.005, (b_lo + b_hi) / 2, name, transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    ax.plot(frames["pts_time"], frames["score"], ".-", color="tab:blue", lw=1, ms=4, label="frame score")
    ax.axhline(r.score, color="black", lw=1.5, label=f"pooled {r.score:.1f}")
    for a, b, _ in worst_segments(frames, r.higher_is_better):
        ax.axvspan(a, b, color="tab:red", alpha=0.08, lw=0)
    for n, (kind, i) in enumerate(picked, 1):
        t, s = frames.at[i, "pts_time"], frames.at[i, "score"]
        ax.plot([t], [s], "v" if kind == "worst" else "^", color="tab:red" if kind == "worst" else "tab:green",
                ms=9, zorder=3)
        ax.annotate(str(n), (t, s), xytext=(0, 8 if kind == "best" else -14), textcoords="offset points",
                    ha="center", fontsize=9, weight="bold")
    ax.set_ylim(lo, hi)
    reading = f" ({band(r.score)})" if scaled_0_100 else ""
    ax.set_title(f"{Path(r.file).name}: {r.score:.1f}{reading}, {len(frames)} frames scored, "
                 f"worst {frames['score'].min():.1f}, best {frames['score'].max():.1f}", fontsize=11)
    ax.set_xlabel("time (s)", fontsize=10)
    ax.set_ylabel(f"{r.scale} ({'higher' if r.higher_is_better else 'lower'} is better)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")


def _picture(ax, rgb: np.ndarray | None, view, title: str, colour: str) -> None:
    """One thumbnail or crop, filling its axes (which have the picture's shape), framed in its colour."""
    ax.set_xticks([])
    ax.set_yticks([])
    if rgb is not None:
        ax.imshow(view(rgb), aspect="auto", interpolation="nearest" if view is centre_crop else "antialiased")
    else:
        ax.text(0.5, 0.5, "not decoded", ha="center", va="center", transform=ax.transAxes)
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2)
    ax.set_title(title, fontsize=9, color=colour)


def _thumbnails(path: str, indices: list[int]) -> dict[int, np.ndarray]:
    if path == "-" or not indices:
        return {}
    try:
        return decode_frames(path, indices)
    except ContriqueError as exc:  # the curve is still worth having
        log.warning("%s: thumbnails left out: %s", path, exc)
        return {}


MAX_PER_PAGE = 24  # a taller page than this is unreadable (and past matplotlib's pixel limit at ~120)


def write_reports(results: Sequence, template: str | os.PathLike) -> list[Path]:
    """One image per input when ``template`` has ``{stem}``, ``{name}`` or ``{index}``, else one page for
    all (the first :data:`MAX_PER_PAGE` inputs, with a warning if there are more)."""
    from contrique_video.runs.logs import log_path

    template = str(template)
    if any(key in template for key in ("{stem}", "{name}", "{index}")):
        return [write_report([r], log_path(template, r.file, i)) for i, r in enumerate(results)]
    if len(results) > MAX_PER_PAGE:
        log.warning("--report shows the first %d of %d inputs; put {stem} in its name for one image per input",
                    MAX_PER_PAGE, len(results))
    return [write_report(results[:MAX_PER_PAGE], template)]


def write_report(results: Sequence, path: str | os.PathLike, y_range: tuple[float, float] | None = None) -> Path:
    """The report of ``results`` (one page, one block per input) as a PNG."""
    fig = report_figure(results, y_range)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return Path(path)


def disagreements(results: Sequence) -> pd.DataFrame:
    """Every scored frame of every input with both scores, ranked by how much the two metrics disagree.

    The scales are not calibrated to each other, so agreement is judged on ranks: each frame's percentile
    rank among all frames by our score and by VMAF; ``gap`` is ours minus VMAF's, in percentile points
    (positive: we rate the frame better than VMAF does). Rows come largest ``|gap|`` first.
    """
    parts = []
    for r in results:
        if "vmaf" not in r.frames:
            continue
        part = r.frames[["frame", "pts_time", "score", "vmaf"]].rename(columns={"score": "contrique"})
        parts.append(part.assign(file=r.file))
    if not parts:
        raise ValueError("no input has VMAF values (score --reference)")
    table = pd.concat(parts, ignore_index=True).dropna(subset=["contrique", "vmaf"])
    sign = 1.0 if all(r.higher_is_better for r in results) else -1.0
    table["contrique_rank"] = (sign * table["contrique"]).rank(pct=True) * 100
    table["vmaf_rank"] = table["vmaf"].rank(pct=True) * 100
    table["gap"] = table["contrique_rank"] - table["vmaf_rank"]
    table = table.reindex(table["gap"].abs().sort_values(ascending=False, kind="stable").index)
    return table[["file", "frame", "pts_time", "contrique", "vmaf", "contrique_rank", "vmaf_rank", "gap"]].reset_index(drop=True)


def compare_figure(results: Sequence, top: int = 8) -> Figure:
    """Side by side: both metrics over time per input (one 0-100 axis), and our score against VMAF per
    frame, with the frames where they disagree most numbered and listed in a table below."""
    table = disagreements(results)
    fig = Figure(figsize=(14, 9))
    grid = fig.add_gridspec(2, 2, height_ratios=[1.3, 1.0], hspace=0.3, wspace=0.22)
    left, right = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    lo, hi = shared_range([table["contrique"], table["vmaf"]])
    for k, r in enumerate(results):
        if "vmaf" not in r.frames:
            continue
        colour = f"C{k % 10}"
        name = Path(r.file).name
        left.plot(r.frames["pts_time"], r.frames["score"], "-", color=colour, marker=".", label=f"{name} contrique")
        left.plot(r.frames["pts_time"], r.frames["vmaf"], "--", color=colour, marker="x", label=f"{name} VMAF")
    left.set_ylim(lo, hi)
    left.set_xlabel("time (s)")
    left.set_ylabel("score (0-100)")
    left.set_title("per frame: contrique (solid) and VMAF (dashed)", fontsize=11)
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower left")
    right.scatter(table["vmaf"], table["contrique"], s=14, alpha=0.6, color="tab:blue")
    shown = table.head(top)
    right.scatter(shown["vmaf"], shown["contrique"], s=60, facecolors="none", edgecolors="tab:red", lw=1.5)
    right.set_xlim(lo, hi)
    right.set_ylim(lo, hi)
    right.set_xlabel("VMAF")
    right.set_ylabel("contrique")
    right.set_title(f"each scored frame ({len(table)}); the {len(shown)} largest rank gaps numbered", fontsize=11)
    right.grid(alpha=0.3)
    tax = fig.add_subplot(grid[1, :])
    tax.axis("off")
    rows = [[str(n), shorten(Path(r.file).name, FILE_CHARS), str(int(r.frame)), f"{r.pts_time:.2f}", f"{r.contrique:.1f}",
             f"{r.vmaf:.1f}", f"{r.contrique_rank:.0f}", f"{r.vmaf_rank:.0f}", f"{r.gap:+.0f}"]
            for n, r in enumerate(shown.itertuples(), 1)]
    cells = tax.table(cellText=rows, colLabels=["#", "file", "frame", "time (s)", "contrique", "VMAF", "rank ours",
                                                "rank VMAF", "gap"], loc="upper center", cellLoc="center")
    cells.auto_set_font_size(False)
    cells.set_fontsize(9)
    cells.auto_set_column_width(range(len(rows[0])))  # each column as wide as its longest text
    cells.scale(1, 1.3)
    renderer = FigureCanvasAgg(fig).get_renderer()
    label_points(right, list(zip(shown["vmaf"], shown["contrique"])), renderer)
    tax.set_title("where the two disagree most (percentile ranks among all frames; gap > 0: we rate it higher)",
                  fontsize=11)
    return fig


def label_points(ax, points: Sequence[tuple[float, float]], renderer, size: int = 9) -> list:
    """Number ``points`` 1, 2, ... with labels that overlap neither each other nor the numbered markers: each
    label takes the first free place on rings around its point (a thin line leads to it when it is moved out),
    as frames that disagree most often sit close together."""
    taken = []  # display-space boxes of the labels placed, and of the markers
    for x, y in points:
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - 5, py - 5, px + 5, py + 5))
    labels = []
    candidates = [(r * np.cos(a), r * np.sin(a)) for r in (8, 16, 24, 34, 46, 60, 76, 94)
                  for a in np.deg2rad(np.arange(45, 405, 30))]
    inside = ax.get_window_extent(renderer)
    for n, (x, y) in enumerate(points, 1):
        for k, (dx, dy) in enumerate(candidates):
            label = ax.annotate(str(n), (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=size,
                                color="tab:red", weight="bold", ha="center", va="center",
                                arrowprops=dict(arrowstyle="-", color="tab:red", lw=0.6, shrinkA=0, shrinkB=4)
                                if k >= 12 else None)
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer).expanded(1.1, 1.1)  # the text, not its leader line
            clear = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1) and \
                not any(box.overlaps(other) for other in taken)
            if clear or k == len(candidates) - 1:  # no free place near: the farthest keeps it readable
                break
            label.remove()
        taken.append(box)
        labels.append(label)
    return labels


def write_compare(results: Sequence, path: str | os.PathLike) -> tuple[Path, Path]:
    """``compare`` view: the PNG of :func:`compare_figure`, and beside it a CSV of every frame's gap."""
    from contrique_video.files import atomic_write

    path = Path(path)
    fig = compare_figure(results)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    table_path = path.with_suffix(".csv")
    atomic_write(table_path, disagreements(results).to_csv(index=False, float_format="%.6f"))
    return path, table_path

"""``score --report``: one PNG page that shows what the score saw.

A number alone does not tell an engineer whether it is right; the frames behind it do. Each input gets
its per-frame curve (with the pooled score, the quality bands of the built-in head's scale, and the worst
and best frames marked) and thumbnails of those worst and best frames with their times and scores. The
thumbnails are decoded again from the file by frame index, in one sequential pass that converts only
those frames, so the report costs a decode, not another scoring run.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from .errors import ContriqueError
from .plot import shared_range, worst_segments
from .sampler import Selector

log = logging.getLogger("contrique_video")
# Readings of the built-in head's 0-100 MOS scale (README, Quality bands): CLIVE's slider labels.
BANDS = [(0, 20, "bad"), (20, 40, "poor"), (40, 60, "fair"), (60, 80, "good"), (80, 100, "excellent")]
BAND_COLOURS = ["#d73027", "#fc8d59", "#fee08b", "#d9ef8b", "#91cf60"]
THUMB_WIDTH = 480


def band(score: float) -> str:
    """The quality band a 0-100 score reads as (``bad`` .. ``excellent``)."""
    for lo, hi, name in BANDS:
        if score < hi:
            return name
    return BANDS[-1][2]


class _IndexSelector(Selector):
    """Keeps the frames with the given indices, and stops the decode after the last of them."""

    def __init__(self, indices: Sequence[int]) -> None:
        super().__init__(0.0, math.inf, f"frames {', '.join(map(str, sorted(indices)))}")
        self.wanted = set(int(i) for i in indices)

    def _accept(self, index, pts_time, is_keyframe):
        keep = index in self.wanted
        self.wanted.discard(index)
        if not self.wanted or index > max(self.wanted, default=-1):
            self.done = True
        return keep


@dataclass(frozen=True)
class FrameIndices:
    """A sampling (as :class:`~contrique_video.sampler.Sampling` is to a source) of given frame indices."""

    indices: tuple[int, ...]

    def selector(self, total_duration: float | None) -> Selector:
        return _IndexSelector(self.indices)

    def describe(self) -> str:
        return f"frames {', '.join(map(str, sorted(self.indices)))}"


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
    """RGB pixels of the frames with these indices (presentation order), shrunk to thumbnails."""
    from .source import open_source

    out = {}
    with open_source(path) as src:
        for frame in src.frames(FrameIndices(tuple(indices))):
            img = Image.fromarray(frame.rgb)
            if img.width > THUMB_WIDTH:
                img = img.resize((THUMB_WIDTH, max(1, round(img.height * THUMB_WIDTH / img.width))), Image.BICUBIC)
            out[frame.index] = np.asarray(img)
    return out


def report_figure(results: Sequence, y_range: tuple[float, float] | None = None, thumbs: int = 2) -> Figure:
    """One block per input: the per-frame curve across the page, and below it the worst and the best
    ``thumbs`` frames. Every curve shares one y axis (0-100 unless a score falls outside it)."""
    lo, hi = shared_range([r.frames["score"] for r in results] + [[r.score] for r in results], y_range)
    cols = 2 * thumbs
    fig = Figure(figsize=(3.4 * cols, 6.2 * len(results)))
    grid = fig.add_gridspec(2 * len(results), cols, height_ratios=[1.25, 1.0] * len(results), hspace=0.45, wspace=0.08)
    for k, r in enumerate(results):
        frames = r.frames.reset_index(drop=True)
        worst, best = extremes(frames, r.higher_is_better, thumbs)
        picked = [("worst", i) for i in worst] + [("best", i) for i in best]
        ax = fig.add_subplot(grid[2 * k, :])
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
        pixels = _thumbnails(r.file, [int(frames.at[i, "frame"]) for _, i in picked])
        for n, (kind, i) in enumerate(picked):
            tax = fig.add_subplot(grid[2 * k + 1, n])
            tax.set_xticks([])
            tax.set_yticks([])
            index = int(frames.at[i, "frame"])
            if index in pixels:
                tax.imshow(pixels[index])
            else:
                tax.text(0.5, 0.5, "not decoded", ha="center", va="center", transform=tax.transAxes)
            colour = "tab:red" if kind == "worst" else "tab:green"
            for spine in tax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2)
            tax.set_title(f"{n + 1}. {kind}: {frames.at[i, 'score']:.1f}\nframe {index} at {frames.at[i, 'pts_time']:.2f} s",
                          fontsize=9, color=colour)
    return fig


def _thumbnails(path: str, indices: list[int]) -> dict[int, np.ndarray]:
    if path == "-" or not indices:
        return {}
    try:
        return decode_frames(path, indices)
    except ContriqueError as exc:  # the curve is still worth having
        log.warning("%s: thumbnails left out: %s", path, exc)
        return {}


def write_report(results: Sequence, path: str | os.PathLike, y_range: tuple[float, float] | None = None) -> Path:
    """The report of ``results`` (one page, one block per input) as a PNG."""
    fig = report_figure(results, y_range)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return Path(path)

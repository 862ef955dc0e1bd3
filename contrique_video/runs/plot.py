"""PNG plots: per-frame quality over time (``score --plot``) and ladder curves with their convex hull.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so plotting needs no display and leaves the
caller's matplotlib backend alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter


def worst_segments(frames: pd.DataFrame, higher_is_better: bool = True, parts: int = 10,
                   count: int = 3) -> list[tuple[float, float, float]]:
    """The ``count`` worst of ``parts`` equal time segments, as (start s, end s, mean score), worst first.

    Segments with no sampled frame are skipped; a video with one frame time has no segments.
    """
    t, s = frames["pts_time"].to_numpy(float), frames["score"].to_numpy(float)
    if len(t) < 2 or t.max() <= t.min():
        return []
    edges = np.linspace(t.min(), t.max(), parts + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, parts - 1)
    segments = [(edges[k], edges[k + 1], float(s[which == k].mean())) for k in range(parts) if (which == k).any()]
    segments.sort(key=lambda seg: seg[2] if higher_is_better else -seg[2])
    return segments[:count]


def shared_range(series: Sequence, y_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """One y range for every panel, so panels compare at a glance: ``y_range`` if given, else 0-100 (the
    heads' scale) widened to any score outside it; scores far off that scale get their own shared span."""
    values = np.concatenate([np.asarray(v, float) for v in series]) if len(series) else np.array([])
    values = values[np.isfinite(values)]
    if y_range is not None:
        lo, hi = y_range
    elif not len(values) or (values.min() >= -10 and values.max() <= 110):
        lo, hi = 0.0, 100.0
    else:
        lo, hi = float(values.min()), float(values.max())
    if len(values):
        lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    pad = 0.03 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def kbps_axis(ax) -> None:
    """A log bitrate axis labelled in plain kbps (200, 500, 1,000, 2,000), never as 2x10^2."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_frames(results: Sequence, path: str | os.PathLike, y_range: tuple[float, float] | None = None) -> Path:
    """``score --plot``: :func:`frames_figure` as a PNG."""
    return _save(frames_figure(results, y_range), path)


def frames_figure(results: Sequence, y_range: tuple[float, float] | None = None) -> Figure:
    """One panel per scored input (a :class:`~contrique_video.api.VideoScore`): per-frame scores over time,
    the pooled score as a line, and the three worst tenths of the video shaded. Every panel has the same
    y axis (see :func:`shared_range`), so a low panel looks low."""
    fig = Figure(figsize=(10, 2.8 * len(results)))
    axes = fig.subplots(len(results), 1, squeeze=False)
    lo, hi = shared_range([r.frames["score"] for r in results] + [[r.score] for r in results], y_range)
    for ax, r in zip(axes[:, 0], results):
        ax.plot(r.frames["pts_time"], r.frames["score"], ".-", lw=1, ms=4, label="frame score")
        ax.axhline(r.score, color="tab:green", lw=1.5, label=f"pooled {r.score:.2f}")
        for k, (a, b, mean) in enumerate(worst_segments(r.frames, r.higher_is_better)):
            ax.axvspan(a, b, color="tab:red", alpha=0.15, label="worst segments" if k == 0 else None)
            ax.annotate(f"{mean:.1f}", ((a + b) / 2, mean), ha="center", va="bottom", fontsize=9, color="tab:red")
        ax.set_ylim(lo, hi)
        ax.set_title(f"{Path(r.file).name}: {r.score:.1f} ({len(r.frames)} frames)", fontsize=11)
        ax.set_xlabel("time (s)", fontsize=10)
        ax.set_ylabel(f"{r.scale}\n({'higher' if r.higher_is_better else 'lower'} is better)", fontsize=10)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def plot_ladder(ladder, path: str | os.PathLike) -> Path:
    """``ladder.png``: :func:`ladder_figure` as a PNG."""
    return _save(ladder_figure(ladder), path)


def ladder_figure(ladder) -> Figure:
    """Score against bitrate (log axis, in kbps) per height, the upper convex hull, and the recommended rungs.

    The hull is drawn first, wide and pale, so every rendition line stays visible on top of it (the hull
    often runs along one height's line for its whole length). With VMAF measured, a second panel shows VMAF
    against bitrate beside it on the same y range, with our rungs circled, so the two ladders compare."""
    table = ladder.table()
    panels = [("score", f"{ladder.scale} by head '{ladder.head}' at {ladder.display[0]}x{ladder.display[1]}")]
    if "vmaf" in table and table["vmaf"].notna().any():
        against = Path(ladder.reference).name if ladder.reference else "the source"
        panels.append(("vmaf", f"VMAF against {against}"))
    fig = Figure(figsize=(9 * len(panels), 6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (column, label) in zip(axes, panels):
        _ladder_panel(ax, table, column, hull=column == "score")
        ax.set_ylabel(label, fontsize=11)
    if len(panels) > 1:
        lo, hi = shared_range([table[column] for column, _ in panels])
        for ax in axes:
            ax.set_ylim(lo, hi)
    axes[0].set_title(f"{Path(ladder.input).name}: {ladder.encoder}, CRF labelled" +
                      (" (partial)" if ladder.partial else ""), fontsize=12)
    return fig


def _ladder_panel(ax, table: pd.DataFrame, column: str, hull: bool) -> None:
    """One ladder panel: ``column`` against kbps per height, CRFs labelled, the rungs circled (and the hull)."""
    if hull:
        on_hull = table[table["on_hull"]].sort_values("kbps")
        ax.plot(on_hull["kbps"], on_hull[column], "-", color="0.55", lw=7, alpha=0.35, solid_capstyle="round",
                label="convex hull", zorder=1)
    markers = "osD^v<>ph"
    for k, (height, group) in enumerate(table.groupby("height", sort=False)):
        group = group.sort_values("kbps")
        ax.plot(group["kbps"], group[column], "-", marker=markers[k % len(markers)], ms=5, lw=1.5,
                label=f"{height}p", zorder=2)
        for _, row in group.iterrows():
            ax.annotate(str(row["crf"]), (row["kbps"], row[column]), fontsize=8, xytext=(4, 4),
                        textcoords="offset points", zorder=4)
    rungs = table[table["rung"]]
    ax.scatter(rungs["kbps"], rungs[column], s=160, facecolors="none", edgecolors="red", lw=2,
               label="recommended rungs", zorder=3)
    kbps_axis(ax)
    ax.set_xlabel("bitrate (kbps, log scale)", fontsize=11)
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3, which="major")
    ax.grid(alpha=0.1, which="minor")
    ax.legend(fontsize=9)


def _save(fig, path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)

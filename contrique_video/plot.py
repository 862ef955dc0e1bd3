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


def plot_frames(results: Sequence, path: str | os.PathLike) -> Path:
    """One panel per scored input (a :class:`~contrique_video.api.VideoScore`): per-frame scores over time,
    the pooled score as a line, and the three worst tenths of the video shaded."""
    fig = Figure(figsize=(10, 2.8 * len(results)))
    axes = fig.subplots(len(results), 1, squeeze=False)
    for ax, r in zip(axes[:, 0], results):
        ax.plot(r.frames["pts_time"], r.frames["score"], ".-", lw=1, ms=4, label="frame score")
        ax.axhline(r.score, color="tab:green", lw=1.5, label=f"pooled {r.score:.2f}")
        for k, (a, b, mean) in enumerate(worst_segments(r.frames, r.higher_is_better)):
            ax.axvspan(a, b, color="tab:red", alpha=0.15, label="worst segments" if k == 0 else None)
            ax.annotate(f"{mean:.1f}", ((a + b) / 2, mean), ha="center", va="bottom", fontsize=8, color="tab:red")
        ax.set_title(Path(r.file).name, fontsize=10)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"{r.scale} ({'higher' if r.higher_is_better else 'lower'} is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def plot_ladder(ladder, path: str | os.PathLike) -> Path:
    """Score against bitrate (log axis) per height, the upper convex hull, and the recommended rungs."""
    table = ladder.table()
    fig = Figure(figsize=(9, 6))
    ax = fig.subplots()
    for height, group in table.groupby("height", sort=False):
        group = group.sort_values("kbps")
        ax.plot(group["kbps"], group["score"], "o-", ms=4, lw=1, label=f"{height}p")
        for _, row in group.iterrows():
            ax.annotate(str(row["crf"]), (row["kbps"], row["score"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    hull = table[table["on_hull"]].sort_values("kbps")
    ax.plot(hull["kbps"], hull["score"], "k--", lw=1.5, label="convex hull")
    rungs = table[table["rung"]]
    ax.scatter(rungs["kbps"], rungs["score"], s=140, facecolors="none", edgecolors="red", lw=2, label="recommended rungs",
               zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("bitrate (kbps)")
    ax.set_ylabel(f"{ladder.scale} by head '{ladder.head}' at {ladder.display[0]}x{ladder.display[1]}")
    ax.set_title(f"{Path(ladder.input).name}: {ladder.encoder}, CRF labelled" + (" (partial)" if ladder.partial else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)

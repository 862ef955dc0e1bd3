"""Temporal pooling: per-frame features -> one per-video feature, and summary statistics of frame scores.

The video feature is the mean of the sampled frames' features, so with a linear head the video score is
exactly the mean of the per-frame scores. The other statistics help find bad segments.
"""

from __future__ import annotations

import numpy as np


class RunningMean:
    """Mean of feature rows without keeping them: memory stays flat however long the video is."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def add(self, rows: np.ndarray) -> None:
        s = rows.astype(np.float64).sum(axis=0)
        self.total = s if self.total is None else self.total + s
        self.count += len(rows)

    @property
    def mean(self) -> np.ndarray:
        if self.total is None:
            raise ValueError("no frames were pooled")
        return self.total / self.count


def score_stats(scores: np.ndarray) -> dict[str, float | None]:
    """Pooled statistics of per-frame scores, as reported in JSON output."""
    s = np.asarray(scores, dtype=np.float64)
    # The harmonic mean weighs low scores more (as VMAF users know it); undefined (None) unless all scores > 0.
    harmonic = float(1.0 / np.mean(1.0 / s)) if np.all(s > 0) else None  # scipy.stats.hmean, without its 1.5 s import
    return {
        "mean": float(s.mean()),
        "harmonic_mean": harmonic,
        "min": float(s.min()),
        "max": float(s.max()),
        "median": float(np.median(s)),
        "p5": float(np.percentile(s, 5)),
        "std": float(s.std()),
    }

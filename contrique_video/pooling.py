"""Temporal pooling: per-frame features -> one per-video feature, and summary statistics of frame scores.

The video feature is the mean of the sampled frames' features; the head maps it to the video score (close to,
not exactly, the mean of the frame scores, because of the head's logistic mapping). The statistics of the
frame scores (:func:`score_stats`, :func:`pool`) help find bad segments and are what logs and ``--pool`` use.
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


POOLS = ("min", "max", "mean", "harmonic_mean", "p5", "p1")  # libvmaf's four, then ours


def pool(values, how: str) -> float | None:
    """One pooled statistic of per-frame values (``p1``, ``p5`` are percentiles; ``harmonic_mean`` is None
    unless every value is positive, as in :func:`score_stats`)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return None
    if how == "p1":
        return float(np.percentile(v, 1))
    stats = score_stats(v)
    if how not in stats:
        raise ValueError(f"unknown pooling {how!r}; use one of {', '.join(POOLS)}")
    return stats[how]

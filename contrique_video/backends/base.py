"""The abstract encoder backend: frames in, features out, for any encoder family and runtime.

Preprocessing belongs to the model (its card's transform, models/transforms.py); a backend only runs the
one-scale network on each scale's batch and lays the results side by side: ``[full-scale | half-scale]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from contrique_video.models.transforms import TwoScale


class Backend(ABC):
    """What every backend shares: the model's preprocessing, the scales, batching by frame size.

    Subclasses implement :meth:`run` on one Nx3xHxW float32 batch in [0, 1] and return Nx``scale_dim``
    float32 features (pooled as the model's layout says).
    """

    name = "?"
    precision = "fp32"
    max_batch: int | None = None  # None: any batch size; compiled and engine paths run fixed-shape batches

    def __init__(self, scale_dim: int, preprocess: TwoScale | None = None):
        self.preprocess = preprocess or TwoScale()
        self.scale_dim = scale_dim
        self.feature_dim = self.preprocess.scales * scale_dim

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Features of one batch at one scale."""

    def describe(self) -> str:
        return f"{self.name} {self.precision}"

    def _run_all(self, batch: np.ndarray) -> np.ndarray:
        step = self.max_batch or len(batch)
        return np.concatenate([self.run(batch[i : i + step]) for i in range(0, len(batch), step)])

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Features for a batch of frames, one block per scale; frames of equal size run together, full scale
        first (the TensorRT backend builds the engine for a new size from the full scale)."""
        out = np.empty((len(frames), self.feature_dim), dtype=np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, rgb in enumerate(frames):
            self.preprocess.check(rgb)
            groups.setdefault(rgb.shape, []).append(i)
        d = self.scale_dim
        for idx in groups.values():
            inputs = [self.preprocess(frames[i]) for i in idx]
            for s in range(self.preprocess.scales):
                out[idx, s * d : (s + 1) * d] = self._run_all(np.stack([x[s] for x in inputs]))
        return out


__all__ = ["Backend"]

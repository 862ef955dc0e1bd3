"""A sampling of given frame indices, for ``get_frames_at`` and for reading chosen frames again (reports)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from contrique_video.decode.sampler import Selector


@dataclass(frozen=True)
class FrameIndices:
    """A sampling of the frames with these indices (presentation order), for ``source.get_frames_at``."""

    indices: tuple[int, ...]

    def selector(self, total_duration: float | None = None, fps: float | None = None) -> Selector:
        return _IndexSelector(self.indices)

    def describe(self) -> str:
        return f"frames {', '.join(map(str, sorted(self.indices)))}"


class _IndexSelector(Selector):
    def __init__(self, indices: Sequence[int]) -> None:
        super().__init__(0.0, math.inf, f"frames {', '.join(map(str, sorted(indices)))}")
        self.last = max(indices, default=-1)
        self.wanted = set(indices)

    def _accept(self, index, pts_time, is_keyframe):
        if index >= self.last:
            self.done = True
        return index in self.wanted

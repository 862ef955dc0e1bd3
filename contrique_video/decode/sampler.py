"""Deterministic frame selection: which decoded frames get scored.

A :class:`Sampling` describes the rule (what the user asked for); a :class:`Selector` is the
stateful object that applies it to one pass over a video. Every source runs it through
:meth:`Selector.pick`, which offers it every frame in presentation order as ``(index, pts_time,
is_keyframe)``: decoded frames, or the frame table a seeking source reads from the packets before
decoding anything. Only timestamps and indices are looked at, so the same file always gives the
same frames either way.

Rules (``t`` is a frame's time in seconds from the first frame; the time range is
``[start, start + D)`` with ``D`` the requested duration, or what is left of the video
after ``start``):

- ``all``: every frame in range.
- ``fps F``: for each grid point ``start + k / F`` keep the first frame at or after it
  (a frame is kept at most once, so ``F`` above the source rate keeps every frame).
- ``frames N``: targets at the centres of N equal parts of the range,
  ``t_k = start + (k + 0.5) * D / N``; for each keep the frame on screen at ``t_k``: the first
  frame that starts less than one frame interval (``1 / fps``, the stream's average rate) before
  it, or, when the rate is unknown, the first frame at or after it (a frame is kept at most
  once). Centred targets do not favour the first frame, a key frame that lossy coding treats
  better than the rest. If the pass ends with nothing kept (a one-frame video whose rate is
  unknown, a file cut short), the source scores the last frame in range
  (:attr:`Selector.fallback_last`). With no known duration (a pipe) the targets cannot be placed
  while frames arrive, so :class:`StreamSelector` keeps candidates at a stride that doubles
  whenever more than ``2N`` are held (dropping every other one), and once the stream has ended
  chooses, for each centred target of the length it had, the held frame nearest the one a file
  of that length would give (the same frame while the stride is 1, i.e. up to ``2N`` frames).
- ``every K``: frames whose position among the frames in range is a multiple of ``K``.
- ``keyframes``: key frames in range only.
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

from contrique_video.errors import InputError

log = logging.getLogger("contrique_video")

MODES = ("all", "fps", "frames", "every", "keyframes")

# Timestamps come from integer PTS times a rational time base; allow for the float
# rounding of that product (far below any real frame interval) when comparing with a
# grid point, so a frame exactly on a grid point is never missed.
_EPS = 1e-6

T = TypeVar("T")


def _fmt_num(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class Sampling:
    """Which frames to score. See the module docstring for the exact rules."""

    mode: str = "frames"
    value: float | None = 64  # the smallest N within 1 point of all frames on 95% of clips (README, Sampling accuracy)
    start: float = 0.0
    duration: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        mode = self.mode
        if mode not in MODES:
            raise InputError(f"unknown sampling mode {mode!r}; choose one of: {', '.join(MODES)}")
        value = self.value
        if mode == "fps":
            if not _is_number(value) or not math.isfinite(float(value)) or float(value) <= 0:
                raise InputError(f"sampling fps must be a number greater than 0, got {value!r}")
        elif mode in ("frames", "every"):
            what = "frame count" if mode == "frames" else "frame step"
            if not _is_whole(value) or int(value) < 1:
                raise InputError(f"sampling {what} for {mode!r} must be a whole number >= 1, got {value!r}")
        if not _is_number(self.start) or not math.isfinite(float(self.start)) or float(self.start) < 0:
            raise InputError(f"start must be a number of seconds >= 0, got {self.start!r}")
        if self.duration is not None and (
            not _is_number(self.duration) or not math.isfinite(float(self.duration)) or float(self.duration) <= 0
        ):
            raise InputError(f"duration must be a number of seconds > 0, got {self.duration!r}")

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        if self.mode == "all":
            text = "all frames"
        elif self.mode == "fps":
            text = f"{_fmt_num(float(self.value))} fps"
        elif self.mode == "frames":
            n = int(self.value)
            text = f"{n} frame{'s' if n != 1 else ''} uniformly"
        elif self.mode == "every":
            k = int(self.value)
            text = "every frame" if k == 1 else f"1 frame in every {k}"
        else:
            text = "key frames"
        if self.start or self.duration is not None:
            end = "end" if self.duration is None else f"{_fmt_num(self.start + self.duration)} s"
            text += f" from {_fmt_num(self.start)} s to {end}"
        return text

    # ------------------------------------------------------------------ selector
    @property
    def keyframes_only(self) -> bool:
        return self.mode == "keyframes"

    def expected_count(self, total_duration: float | None, fps: float | None) -> int | None:
        """About how many frames will be kept (for a progress bar's ETA); None when it cannot be known."""
        if total_duration is None:
            return None
        span = max(0.0, total_duration - self.start)
        if self.duration is not None:
            span = min(span, float(self.duration))
        if self.mode == "frames":
            return int(self.value)
        if self.mode == "fps":
            return max(1, math.ceil(span * float(self.value)))
        if fps is None or self.mode == "keyframes":
            return None
        n = max(1, round(span * fps))
        return n if self.mode == "all" else math.ceil(n / int(self.value))

    def on_stream(self, total_duration: float | None) -> bool:
        """Whether this is ``frames N`` over a range whose end is unknown until the stream ends (a pipe): its
        selector is then a :class:`StreamSelector`, which chooses the frames to score only at the end."""
        if total_duration is not None and (not math.isfinite(total_duration) or total_duration <= 0):
            total_duration = None
        return self.mode == "frames" and self.duration is None and total_duration is None

    def selector(self, total_duration: float | None, fps: float | None = None) -> "Selector":
        """A fresh selector for one pass over a video of ``total_duration`` seconds at about ``fps``
        frames a second (None: unknown)."""
        if total_duration is not None and (not math.isfinite(total_duration) or total_duration <= 0):
            total_duration = None
        if fps is not None and (not math.isfinite(fps) or fps <= 0):
            fps = None
        start = float(self.start)
        if total_duration is not None and start >= total_duration:
            raise InputError(
                f"start {_fmt_num(start)} s is at or after the end of the video ({total_duration:.3f} s)"
            )
        # The range ends where the user said; the container's duration is only used to
        # spread "frames N" targets (it can be slightly short or long, so it never cuts
        # frames off by itself).
        end = math.inf if self.duration is None else start + float(self.duration)
        mode = self.mode
        if mode == "all":
            return _EverySelector(start, end, 1, "all frames")
        if mode == "every":
            return _EverySelector(start, end, int(self.value), self.describe())
        if mode == "keyframes":
            return _KeyframeSelector(start, end)
        if mode == "fps":
            return _GridSelector(start, end, [], 1.0 / float(self.value), self.describe())
        # frames N
        n = int(self.value)
        span_end = end
        if total_duration is not None:
            span_end = min(end, total_duration)
        if span_end is None or math.isinf(span_end):
            # Info, not a warning: it is what reading a pipe always means, and -q must silence it.
            log.info("video duration is unknown (a pipe?): choosing %d frames from candidates kept at a stride "
                     "that doubles as frames arrive", n)
            return StreamSelector(start, n, fps)
        span = span_end - start
        targets = [start + (k + 0.5) * span / n for k in range(n)]
        selector = _GridSelector(start, end, targets, None, self.describe(), lead=1.0 / fps if fps else 0.0)
        selector.fallback_last = True
        return selector


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value) -> bool:
    return _is_number(value) and math.isfinite(value) and float(value) == int(value)


class Selector:
    """Stateful frame filter for one decoding pass.

    Call :meth:`offer` with every frame in presentation order; it returns True for the
    frames to keep. Once :attr:`done` is True no later frame can be kept and decoding
    can stop. :attr:`keyframes_only` tells a decoder it may skip non-key frames.
    """

    keyframes_only = False
    #: When a pass ends with no frame kept, the source should keep the last frame it offered in
    #: range (``frames N``: every video has a frame nearest its targets, even a one-frame one).
    fallback_last = False

    def __init__(self, start: float, end: float, description: str) -> None:
        self.start = start
        self.end = end
        self.description = description
        self.done = False
        self.offered = 0
        self.kept = 0

    def offer(self, index: int, pts_time: float, is_keyframe: bool = False) -> bool:
        if self.done:
            return False
        self.offered += 1
        if pts_time >= self.end - _EPS:
            self.done = True
            return False
        if pts_time < self.start - _EPS:
            return False
        keep = self._accept(index, pts_time, is_keyframe)
        if keep:
            self.kept += 1
        return keep

    def pick(self, frames: Iterable[tuple[int, float, bool, T]]) -> Iterator[tuple[int, float, T]]:
        """Offer ``frames`` (``(index, pts_time, is_keyframe, payload)`` in presentation order) and yield the
        kept ones as ``(index, pts_time, payload)``; stops reading ``frames`` once :attr:`done`.

        The one place where sources choose frames. With :attr:`fallback_last`, a pass that kept nothing
        yields the last frame it offered in range.
        """
        last = None  # the last frame in range that was not kept
        for index, pts_time, is_keyframe, payload in frames:
            if self.offer(index, pts_time, is_keyframe):
                yield index, pts_time, payload
            elif not self.done and pts_time >= self.start - _EPS:
                last = (index, pts_time, payload)
            if self.done:
                break
        if self.kept == 0 and self.fallback_last and last is not None:
            self.kept = 1
            yield last

    def _accept(self, index: int, pts_time: float, is_keyframe: bool) -> bool:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} kept={self.kept} done={self.done}>"


class _EverySelector(Selector):
    def __init__(self, start: float, end: float, step: int, description: str) -> None:
        super().__init__(start, end, description)
        self.step = step
        self._in_range = 0

    def _accept(self, index, pts_time, is_keyframe):
        position = self._in_range
        self._in_range += 1
        return position % self.step == 0


class _KeyframeSelector(Selector):
    keyframes_only = True

    def __init__(self, start: float, end: float) -> None:
        super().__init__(start, end, "key frames")

    def _accept(self, index, pts_time, is_keyframe):
        return bool(is_keyframe)


class _GridSelector(Selector):
    """Keep the first frame at or after each target time; either an explicit finite list
    of targets (``frames N``) or an open-ended grid ``start + k * step`` (``fps``).

    With ``lead`` > 0 (a frame interval) a frame also covers the targets up to ``lead`` after its
    start, so the frame kept for a target is the one on screen at that time."""

    def __init__(self, start: float, end: float, targets: list[float], step: float | None, description: str,
                 lead: float = 0.0):
        super().__init__(start, end, description)
        self.targets = targets
        self.step = step
        self.lead = lead
        self._k = 0  # next target index

    def _target(self, k: int) -> float:
        if self.step is None:
            return self.targets[k]
        return self.start + k * self.step

    def _accept(self, index, pts_time, is_keyframe):
        if self.step is None and self._k >= len(self.targets):
            self.done = True
            return False
        # The latest target this frame covers: its own time, or (with a lead) up to just
        # before the next frame would start.
        reach = pts_time + self.lead - _EPS if self.lead else pts_time + _EPS
        if reach < self._target(self._k):
            return False
        # This frame is the first to cover target k; it also covers every later target
        # within its reach (a frame is kept at most once).
        if self.step is None:
            while self._k < len(self.targets) and self.targets[self._k] <= reach:
                self._k += 1
            if self._k >= len(self.targets):
                self.done = True
        else:
            self._k = max(self._k + 1, int(math.floor((pts_time - self.start + _EPS) / self.step)) + 1)
        return True


class StreamSelector(Selector):
    """``frames N`` on a stream whose length is unknown until it ends (a pipe).

    Frames in range are candidates while their position is a multiple of :attr:`stride`; when more than
    ``2N`` are held the stride doubles and the candidates off the new stride are dropped, so at most
    ``2N + 1`` are ever held. :meth:`holds` tells the caller which frames to keep (their features, say) and
    :meth:`choose`, once the stream has ended, which ``N`` of them are scored: for each target of
    ``frames N`` over the length the stream had, the held frame nearest the one on screen at that time (the
    file's choice whenever the stride is still 1). :attr:`description` then says what was done.
    """

    def __init__(self, start: float, n: int, fps: float | None) -> None:
        super().__init__(start, math.inf, f"{n} frame{'s' if n != 1 else ''} uniformly (stream of unknown length)")
        self.n = n
        self.fps = fps
        self.stride = 1
        self.candidates: dict[int, tuple[int, float]] = {}  # frame index -> (position in range, pts_time)
        self._position = 0
        self._first: float | None = None
        self._last: float | None = None

    def _accept(self, index, pts_time, is_keyframe):
        position = self._position
        self._position += 1
        self._first = pts_time if self._first is None else self._first
        self._last = pts_time
        if position % self.stride:
            return False
        self.candidates[index] = (position, pts_time)
        if len(self.candidates) > 2 * self.n:
            self.stride *= 2
            self.candidates = {i: c for i, c in self.candidates.items() if c[0] % self.stride == 0}
        return True

    def holds(self, index: int) -> bool:
        """Whether frame ``index`` is still a candidate (once dropped, never again)."""
        return index in self.candidates

    def choose(self) -> list[int]:
        """The indices to score, in order, once the stream has ended; sets :attr:`description`."""
        if not self.candidates:
            return []
        frames = self._position
        interval = 1.0 / self.fps if self.fps else (self._last - self._first) / max(1, frames - 1)
        span = max(self._last + interval - self.start, interval)
        lead = 1.0 / self.fps if self.fps else 0.0
        held = sorted(self.candidates.items(), key=lambda item: item[1][0])
        chosen: list[int] = []
        after = 0  # candidates before this one are taken or passed
        for k in range(self.n):
            target = self.start + (k + 0.5) * span / self.n
            # The middle of the frame a file of this length would keep: the one on screen at the target (starting
            # in (target - lead, target]) with a known rate, else the first at or after it; _EPS settles the ties
            # at the ends of that interval as the file's rule does.
            ideal = target - lead / 2 + _EPS if lead else target + interval / 2 - _EPS
            best = None
            for j in range(after, len(held)):
                if best is None or abs(held[j][1][1] - ideal) < abs(held[best][1][1] - ideal):
                    best = j
                elif held[j][1][1] > ideal:
                    break
            if best is None:
                break
            chosen.append(held[best][0])
            after = best + 1
        how = "the frames a file would give" if self.stride == 1 else \
            f"those nearest a file's choice of 1 frame in every {self.stride}"
        self.description = (f"{len(chosen)} frame{'s' if len(chosen) != 1 else ''} uniformly over a stream of "
                            f"unknown length ({frames} frames; {how})")
        return chosen

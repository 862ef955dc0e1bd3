"""Decoding only around the sampled frames: a frame table from packets, and seek-then-decode-forward.

:func:`scan` reads every packet of the stream once without decoding (cheap next to decoding) and
returns a :class:`Timeline`: each frame's PTS in presentation order and which packets are key frames.
A frame's index is its position in that table and its time ``(pts - start) * time_base``: exactly what
a decode from the start gives, for constant and variable frame rates alike, provided every packet
decodes to one frame. :func:`decode_at` checks that around every frame it decodes: after each seek the
decoded PTS must follow the table one by one from a key frame at or before the target; anything else
(a seek that lands after its target, a missing or extra frame, a decoding error) raises
:class:`SeekFailed`, and the source decodes the whole stream instead.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator

# Demuxers whose seeking is index based, hence exact (MP4/MOV sample tables, Matroska cues). Others
# (MPEG-TS, raw streams, NUT, ...) seek by byte offset or not at all: those files are decoded in one pass.
SEEKABLE_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})


class SeekFailed(Exception):
    """The frames decoded after a seek do not match the frame table."""


@dataclass(frozen=True)
class Timeline:
    """Every frame of a stream in presentation order, from its packets."""

    pts: list[int]  # ascending, unique; the first is the first decoded frame's
    keys: list[int]  # positions (indices) of key-frame packets, ascending
    time_base: Fraction
    read_to_end: bool  # False when a damaged spot stopped demuxing

    def time(self, index: int) -> float:
        """Seconds from the first frame, computed as a decode from the start computes them."""
        return float((self.pts[index] - self.pts[0]) * self.time_base)

    def entries(self) -> Iterator[tuple[int, float, bool, None]]:
        """``(index, pts_time, is_keyframe, None)`` for :meth:`~contrique_video.decode.sampler.Selector.pick`."""
        keys = set(self.keys)
        for i in range(len(self.pts)):
            yield i, self.time(i), i in keys, None

    def position(self, pts: int) -> int | None:
        i = bisect.bisect_left(self.pts, pts)
        return i if i < len(self.pts) and self.pts[i] == pts else None

    def key_before(self, index: int) -> int:
        """The last key frame at or before ``index`` (0 when there is none)."""
        k = bisect.bisect_right(self.keys, index)
        return self.keys[k - 1] if k else 0


def scan(container, stream, start_pts: int | None) -> Timeline | None:
    """The frame table of ``stream``, read from ``container`` (freshly opened; it is read to the end).

    None when it cannot give exact indices: a packet without PTS, two packets with one PTS, or no
    known first frame.
    """
    import av

    if start_pts is None:
        return None
    entries: list[tuple[int, bool]] = []
    read_to_end = True
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if packet.pts is None:
                return None
            entries.append((packet.pts, bool(packet.is_keyframe)))
    except av.FFmpegError:
        read_to_end = False
    entries.sort()
    entries = [e for e in entries if e[0] >= start_pts]  # an edit list drops the frames before the first one
    pts = [p for p, _ in entries]
    if not pts or pts[0] != start_pts or any(a == b for a, b in zip(pts, pts[1:])):
        return None
    keys = [i for i, (_, key) in enumerate(entries) if key]
    return Timeline(pts, keys, stream.time_base, read_to_end)


def _seek(container, stream, pts: int) -> None:
    container.seek(pts, stream=stream, backward=True, any_frame=False)


def _decoded(container, stream) -> Iterator:
    """Decoded frames from where the container stands; errors raise :class:`SeekFailed`."""
    import av

    try:
        for packet in container.demux(stream):
            yield from stream.decode(packet)
    except av.FFmpegError as exc:
        raise SeekFailed(f"decoding error after a seek ({exc})") from None


def decode_at(container, stream, timeline: Timeline, targets: list[int],
              counted: Callable[[], None]) -> Iterator[tuple[int, object]]:
    """``(index, av.VideoFrame)`` for each table index in ``targets`` (ascending).

    For each target: seek to the key frame at or before it, unless the decoder already stands between
    that key frame and the target, then decode forward to it. ``counted`` is called for every decoded frame.
    """
    frames = None
    next_index = -1  # the table index of the next frame ``frames`` gives; -1 right after a seek
    for target in targets:
        key = timeline.key_before(target)
        if frames is None or next_index < 0 or next_index > target or key > next_index:
            if frames is not None:
                frames.close()
            _seek(container, stream, timeline.pts[key])
            frames = _decoded(container, stream)
            next_index = -1
        for frame in frames:
            counted()
            if frame.pts is None:
                raise SeekFailed("a decoded frame has no PTS")
            if next_index < 0:
                # The first frames out of a seek may be the leading pictures of an open GOP, which reference
                # frames before the key frame: start at the first key frame.
                if frame.pts > timeline.pts[target]:
                    raise SeekFailed(f"the seek for frame {target} landed after it")
                if not frame.key_frame:
                    continue
                found = timeline.position(frame.pts)
                if found is None:
                    raise SeekFailed(f"a frame with PTS {frame.pts} is not in the packet table")
                next_index = found
            elif frame.pts != timeline.pts[next_index]:
                raise SeekFailed(f"frame {next_index} decoded with PTS {frame.pts}, the table says "
                                 f"{timeline.pts[next_index]}")
            next_index += 1
            if next_index > target:
                yield target, frame
                break
        else:
            raise SeekFailed(f"the stream ended before frame {target}")
    if frames is not None:
        frames.close()

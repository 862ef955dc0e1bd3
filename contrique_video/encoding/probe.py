"""What a media file holds, read without decoding where possible: a source's size, duration and frame rate,
and an encode's size, frame count and bitrate."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av

from contrique_video.errors import InputError


@dataclass(frozen=True)
class Encoded:
    """An encoded (or lossless intermediate) file: its size, and what bitrate that makes."""

    path: Path
    bytes: int
    frames: int
    seconds: float
    width: int
    height: int

    @property
    def kbps(self) -> float:
        return self.bytes * 8 / self.seconds / 1000 if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class MediaInfo:
    """A source's size, duration (None when unknown) and frame rate (25 when unknown), for placing samples."""

    width: int
    height: int
    duration: float | None
    fps: float


def media_info(path: str | os.PathLike) -> MediaInfo:
    """Size, duration and frame rate of a video, with the scorer's own one-line errors for bad input."""
    from contrique_video.decode import open_source

    with open_source(path) as src:
        if src.is_image:
            raise InputError(f"{path} is a still image; encoding needs a video")
        return MediaInfo(src.width, src.height, src.duration, src.fps or 25.0)


def describe(path: str | os.PathLike) -> Encoded:
    """Size, frame count and duration of an encoded file, read from its packets (nothing is decoded): the
    duration spans their timestamps, so a variable-frame-rate file is as long as it plays."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        rate = float(vs.average_rate or vs.guessed_rate or 25)
        timed = [(p.pts, p.duration or 0) for p in c.demux(vs) if p.size]
        w, h = vs.codec_context.width, vs.codec_context.height
        stamps = [(pts, d) for pts, d in timed if pts is not None]
        seconds = len(timed) / rate
        if len(stamps) == len(timed) and stamps and vs.time_base:
            span = max(pts + d for pts, d in stamps) - min(pts for pts, _ in stamps)
            if span > 0 and abs(float(span * vs.time_base) - seconds) > 1 / rate:  # not constant-rate
                seconds = float(span * vs.time_base)
    return Encoded(Path(path), Path(path).stat().st_size, len(timed), seconds, w, h)


def frame_sizes(path: str | os.PathLike) -> list[tuple[int, bool]]:
    """(bytes, is key frame) of each video packet of an encode, in presentation order."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        packets = sorted((p.pts if p.pts is not None else i, p.size, p.is_keyframe)
                         for i, p in enumerate(c.demux(vs)) if p.size)
    return [(size, key) for _, size, key in packets]

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
    """Size, frame count and duration of an encoded file, read from its packets (nothing is decoded)."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        rate = float(vs.average_rate or vs.guessed_rate or 25)
        frames = sum(1 for p in c.demux(vs) if p.size)
        w, h = vs.codec_context.width, vs.codec_context.height
    return Encoded(Path(path), Path(path).stat().st_size, frames, frames / rate, w, h)

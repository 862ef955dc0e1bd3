"""What every frame source shares: the :class:`FrameSource` interface, input checks, and one-line errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

from contrique_video.decode.frames import Frame
from contrique_video.decode.metadata import VideoMetadata
from contrique_video.decode.sampler import Sampling, Selector
from contrique_video.errors import InputError

log = logging.getLogger("contrique_video")

STDIN = "-"


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def ffmpeg_reason(exc: BaseException) -> str:
    """A short reason from a PyAV/FFmpeg exception, without the repeated file name."""
    strerror = getattr(exc, "strerror", None)
    return one_line(strerror or exc) or type(exc).__name__


def shortfall(last: float, duration: float | None, fps: float | None, loose: bool) -> str | None:
    """A note when the video, whose last frame starts at ``last`` s, ends before the container's ``duration``.

    Containers round durations, and one whose duration is not the video's own (MKV, TS) may count a longer
    audio track: 1.5 frames are allowed, and half a second more when ``loose``.
    """
    interval = 1.0 / fps if fps else 0.04
    decoded = last + interval
    if not duration or decoded >= duration - 1.5 * interval - (0.5 if loose else 0.0):
        return None
    return f"the video decodes to {decoded:.2f} s of the {duration:.2f} s the container declares (truncated?)"


def check_path(path: Path) -> None:
    """Refuse a missing, empty, unreadable or directory path with a one-line message before FFmpeg sees it."""
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a video or image file")
    if not path.is_file():
        return  # a named pipe or device (e.g. bash's <(ffmpeg ...)): let FFmpeg read it
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {path}: {one_line(exc.strerror or exc)}") from None
    if size == 0:
        raise InputError(f"{path} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied")


class FrameSource:
    """A video or image that yields RGB frames. Use as a context manager.

    ``width``, ``height``, ``duration``, ``fps``, ``bit_depth`` and ``codec`` start as :attr:`metadata`
    says; they are plain attributes so that a caller (or a test) can override what sampling sees.
    """

    path: str
    metadata: VideoMetadata
    width: int
    height: int
    duration: float | None
    fps: float | None
    bit_depth: int
    is_image: bool
    codec: str
    decoder: str

    #: Frames the decoder produced during the last :meth:`frames` call (how a test sees that decoding
    #: stopped early or only decoded around its targets; for decord, the frames it was asked for).
    decoded_frames: int = 0
    #: Whether the last :meth:`frames` call seeked to its frames (False: one pass from the start).
    seeked: bool = False
    #: The selector of the last :meth:`frames` call: what chose its frames (a
    #: :class:`~contrique_video.decode.sampler.StreamSelector` on a pipe says which of them to score at the end).
    selector: Selector | None = None
    #: "pq" or "hlg" for a stream tagged with an HDR transfer function (it is scored as decoded, as SDR).
    hdr: str | None = None

    def _adopt(self, metadata: VideoMetadata) -> None:
        self.metadata = metadata
        self.width, self.height = metadata.width, metadata.height
        self.duration, self.fps = metadata.duration, metadata.fps
        self.bit_depth, self.codec, self.hdr = metadata.bit_depth, metadata.codec, metadata.hdr

    @property
    def warnings(self) -> list[str]:
        """Short notes about what may make the score misleading (HDR, damage, a lossy pipe), for the record."""
        return self.__dict__.setdefault("_warnings", [])

    @property
    def _where(self) -> str:
        return "stdin" if self.path == STDIN else self.path

    def _warn(self, text: str) -> None:
        """Say ``text`` once on stderr (a warning naming the input) and keep it for the record."""
        if text not in self.warnings:
            self.warnings.append(text)
            log.warning("%s: %s", self._where, text)

    def _warn_damage(self, problems: list[str | None]) -> None:
        """One warning for what a damaged or truncated input lost; the score stands on what decodes."""
        found = [p for p in problems if p]
        if found:
            self._warn("damaged or truncated: " + "; ".join(found) + "; scored what decodes")

    def _nothing_selected(self, sampling) -> InputError:
        return InputError(
            f"{self._where}: no frames in the selected range ({sampling.describe()}; "
            f"{self.decoded_frames} frames decoded)"
        )

    def frames(self, sampling: Sampling | None = None) -> Iterator[Frame]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "image" if self.is_image else "video"
        return (
            f"<{type(self).__name__} {self.path!r} {kind} {self.width}x{self.height} "
            f"{self.codec} {self.bit_depth}-bit>"
        )

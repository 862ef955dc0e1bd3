"""Batch runs: expanding directories and globs into inputs, per-file time limits, and SIGTERM as a clean exit."""

from __future__ import annotations

import contextlib
import glob
import signal
from collections.abc import Iterator
from pathlib import Path

from contrique_video.decode import IMAGE_EXTENSIONS
from contrique_video.errors import InputError

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".mxf", ".nut", ".flv", ".mpg",
    ".mpeg", ".y4m", ".ivf", ".obu", ".264", ".h264", ".265", ".hevc", ".wmv", ".3gp", ".ogv",
})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS


def expand_inputs(items: list[str]) -> list[str]:
    """Files as given; directories become their media files (recursively, sorted); names that match
    nothing stay as they are, so each gets its own one-line error. Quoted glob patterns expand here."""
    out: list[str] = []
    for item in items:
        path = Path(item)
        if item != "-" and path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)
            out += found or [item]  # a folder with no media is reported as its own failure
        elif not path.exists() and glob.has_magic(item):
            out += sorted(glob.glob(item, recursive=True)) or [item]
        else:
            out.append(item)
    return list(dict.fromkeys(out))  # each input once, first occurrence kept


class TimedOut(InputError):
    pass


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TimedOut in the main thread after ``seconds`` (checked between Python steps; a single
    forward pass in progress finishes first)."""
    if not seconds:
        yield
        return

    def expire(signum, frame):
        raise TimedOut(f"timed out after {seconds:g} s (--timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that ``finally`` blocks close and keep finished results."""


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""Batch inputs: directories, globs and manifests expanded into inputs; per-file time limits; SIGTERM as a clean exit."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import threading
from collections.abc import Callable, Iterator
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


def shorten(text: str, width: int, keep_end: bool = True) -> str:
    """``text`` cut to ``width`` characters with an ellipsis where it was cut, so a cut is never silent."""
    if len(text) <= width:
        return text
    return "\u2026" + text[-(width - 1):] if keep_end else text[:width - 1] + "\u2026"


def read_manifest(path: str | os.PathLike) -> list[str]:
    """Inputs listed in a CSV or Parquet file: its ``file`` or ``path`` column (or its only column)."""
    import pandas as pd

    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except ImportError:
        raise InputError("a Parquet manifest needs pyarrow: pip install 'contrique-video[parquet]'") from None
    except FileNotFoundError:
        raise InputError(f"no such manifest: {path}") from None
    except (ValueError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"manifest {path}: cannot read it as {path.suffix.lstrip('.') or 'CSV'} ({reason})") from None
    column = next((c for c in ("file", "path") if c in table.columns), table.columns[0] if len(table.columns) == 1 else None)
    if column is None:
        raise InputError(f"manifest {path}: needs a 'file' or 'path' column (has {', '.join(map(str, table.columns))})")
    names = [str(v).strip() for v in table[column] if isinstance(v, str) and v.strip()]
    return list(dict.fromkeys(names))


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
def stop_signals() -> Iterator[Callable[[], None]]:
    """SIGTERM raised as :class:`Terminated` and Ctrl-C as ``KeyboardInterrupt``, and each also remembered.

    PyAV swallows what a handler raises while FFmpeg waits in a system call (opening a pipe or a stalled network
    stream) and reports EINTR instead, so the yielded check raises a remembered signal again: call it between
    inputs, before the interrupted input is recorded as a failure that ``--resume`` would then skip.
    """
    caught: list[type[BaseException]] = []
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield lambda: None
        return

    def raising(stop: type[BaseException]):
        def handler(signum, frame):
            caught.append(stop)
            raise stop()
        return handler

    def check() -> None:
        if caught:
            raise caught[0]()

    handlers = {signal.SIGTERM: raising(Terminated)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored or handled
        handlers[signal.SIGINT] = raising(KeyboardInterrupt)
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield check
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

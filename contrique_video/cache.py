"""The per-machine cache (exports, compiled graphs, auto's choice, weight digests) that processes share.

Several processes may fill it at once (``score --workers``, Dask workers, parallel CI jobs): every file goes in
through :func:`contrique_video.files.atomic_write` or :func:`~contrique_video.files.atomic_path`, so a reader
sees a whole file or none, and :func:`preparing` holds a lock while one process makes an entry, so the others
wait for it instead of making it again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """Where exports, compiled graphs, engines and auto's choice are kept: $CONTRIQUE_VIDEO_CACHE or
    ~/.cache/contrique-video."""
    root = os.environ.get("CONTRIQUE_VIDEO_CACHE") or Path.home() / ".cache" / "contrique-video"
    return Path(root)


@contextlib.contextmanager
def preparing(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` while this process makes ``path``; another process waits, then
    finds it made. ``fcntl.flock`` (POSIX): the kernel drops the lock when a process dies, so a crash never leaves
    it held (filelock 4.3's fork handler printed a traceback when the export forked while holding its lock).
    Without fcntl (Windows) nothing is locked: the atomic writes still keep every file whole."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


__all__ = ["cache_dir", "preparing"]

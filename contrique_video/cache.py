"""The per-machine cache (exports, compiled graphs, auto's choice, weight digests) that processes share.

Several processes may fill it at once (``score --workers``, Dask workers, parallel CI jobs): every file is
written to a uniquely named temporary beside it and renamed into place, so a reader sees a whole file or
none; :func:`preparing` holds a lock file while one process makes an entry, so the others wait for it
instead of making it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

def cache_dir() -> Path:
    """Where exported models, compiled graphs and engines are kept: $CONTRIQUE_VIDEO_CACHE or ~/.cache/contrique-video."""
    root = os.environ.get("CONTRIQUE_VIDEO_CACHE") or Path.home() / ".cache" / "contrique-video"
    return Path(root)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a unique temporary in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


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


def digest_memo(path: Path, compute) -> str:
    """``compute(path)`` (a SHA-256 of a weights file), remembered in the cache by the file's resolved path,
    size and modification time, so a start-up does not read and hash the weights again."""
    path = Path(path).resolve()
    stat = path.stat()
    stamp = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    memo = cache_dir() / "digests" / f"{hashlib.sha256(str(path).encode()).hexdigest()[:16]}.json"
    try:
        saved = json.loads(memo.read_text())
        if {k: saved.get(k) for k in stamp} == stamp and isinstance(saved.get("sha256"), str):
            return saved["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = compute(path)
    with contextlib.suppress(OSError):  # a read-only cache only costs the hashing
        atomic_write(memo, json.dumps({**stamp, "sha256": digest}))
    return digest


__all__ = ["atomic_write", "cache_dir", "digest_memo", "preparing"]

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

#: How long a process waits for another one preparing the same entry before it makes its own (seconds).
LOCK_TIMEOUT = 600


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
    """Hold ``<path>.lock`` while this process makes ``path``; another process waits, then finds it made."""
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=LOCK_TIMEOUT)
    except Timeout:  # a stuck process must not stop this one: its own atomic writes keep the cache whole
        yield
        return
    try:
        yield
    finally:
        lock.release()


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


__all__ = ["LOCK_TIMEOUT", "atomic_write", "cache_dir", "digest_memo", "preparing"]

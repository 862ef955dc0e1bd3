"""Files the package writes and checks: atomic writes, SHA-256 digests, the cache folder.

One of each, so that every output, checkpoint and cached export is replaced whole or not at all (a crash or
Ctrl-C leaves the old file or the new one, never a part), and every digest is computed the same way.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """Where exports, engines and auto's timings are kept: $CONTRIQUE_VIDEO_CACHE or ~/.cache/contrique-video."""
    root = os.environ.get("CONTRIQUE_VIDEO_CACHE") or Path.home() / ".cache" / "contrique-video"
    return Path(root)


def sha256_file(path: str | os.PathLike) -> str:
    """The file's SHA-256 (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (with any library's save); on success it replaces ``path``
    (``os.replace``), on any exception it is removed. The file gets the permissions of the one it replaces,
    or a new file's under the umask."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.partial")
    try:
        yield tmp
        os.chmod(tmp, _mode(path))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically and durably (fsync before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def _mode(path: Path) -> int:
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


__all__ = ["atomic_path", "atomic_write", "cache_dir", "sha256_file"]

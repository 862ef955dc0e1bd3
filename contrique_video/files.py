"""Files the package writes and checks: atomic writes and SHA-256 digests.

One of each, so that every output, checkpoint and cached export is replaced whole or not at all (a crash, a
Ctrl-C or another process writing the same file leaves the old file or a new one, never a part), and every
digest is computed the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from contrique_video.cache import cache_dir


def sha256_file(path: str | os.PathLike, remember: bool = False) -> str:
    """The file's SHA-256 (hex), read in 1 MiB blocks.

    ``remember``: keep it in the cache (``digests/``) by the file's resolved path, size and modification time and
    answer from there while those hold, so a start-up does not read and hash the model's weights again."""
    if not remember:
        return _sha256(path)
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
    digest = _sha256(path)
    with contextlib.suppress(OSError):  # a read-only cache only costs the hashing
        memo.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(memo, json.dumps({**stamp, "sha256": digest}))
    return digest


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (with any library's save); on success it replaces ``path``
    (``os.replace``), on any exception it is removed. The temporary's name is made unique by ``mkstemp`` (created
    exclusively), so processes writing the same file at once never share one. The file gets the permissions of
    the one it replaces, or a new file's under the umask."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(name)
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


__all__ = ["atomic_path", "atomic_write", "sha256_file"]

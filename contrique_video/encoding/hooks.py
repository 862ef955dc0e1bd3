"""The hook for ladder and chunked-encoding tools: score one encoded file or segment, get a record back.

    >>> from contrique_video.encoding.hooks import score_rendition
    >>> score_rendition("seg_0007_720p.mkv", display=(1920, 1080))["score"]

A rendition below the display size is upscaled to it first (bicubic, as VMAF practice does), so every
rung of a ladder is scored as a viewer on that display sees it. The model is loaded once per process and
reused across calls unless a :class:`~contrique_video.api.Scorer` is passed.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from contrique_video.encoding.encode import upscale
from contrique_video.encoding.probe import describe
from contrique_video.encoding.sampling import centred


@functools.lru_cache(maxsize=1)
def default_scorer():
    """The built-in model and head, loaded on first use and kept for the process."""
    from contrique_video.api import Scorer

    return Scorer()


def score_rendition(
    path: str | os.PathLike,
    display: tuple[int, int] | None = None,
    *,
    scorer=None,
    frames: int = 8,
    workdir: str | os.PathLike | None = None,
    inspect: Callable[[Path], None] | None = None,
    ffmpeg: str | None = None,
) -> dict:
    """The score record of an encode (``score --format json`` keys) plus its size, bitrate and geometry.

    ``frames`` frames are scored, spread over the encode (see :func:`centred`).
    ``display`` is the (width, height) it is viewed at (default: its own size). ``inspect`` receives the
    display-size file that was scored (a lossless upscale, or the encode itself) before temporary files go,
    e.g. to run a full-reference metric on exactly the same pixels. ``ffmpeg`` runs the upscale.
    """
    scorer = scorer or default_scorer()
    encoded = describe(path)
    size = (int(display[0]), int(display[1])) if display else (encoded.width, encoded.height)
    with tempfile.TemporaryDirectory(prefix="contrique-rendition-", dir=workdir) as tmp:
        shown = Path(path) if size == (encoded.width, encoded.height) else upscale(path, Path(tmp) / "display.mkv", size, ffmpeg).path
        result = scorer.score(shown, sampling=centred(frames, encoded.seconds))
        if inspect is not None:
            inspect(shown)
    return {**result.record(), "file": str(path), "bytes": encoded.bytes, "kbps": encoded.kbps,
            "seconds": encoded.seconds, "width": encoded.width, "height": encoded.height, "display": list(size)}

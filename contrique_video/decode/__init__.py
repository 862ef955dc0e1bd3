"""Frame sources: decode videos (PyAV or decord) and still images (Pillow) to RGB arrays.

``open_source(path)`` returns a :class:`FrameSource`; iterate ``source.frames(sampling)`` to get
:class:`Frame` objects for the frames a :class:`~contrique_video.decode.sampler.Sampling` selects, or ask
for frames by index or time (``get_frames_at`` / ``get_frames_played_at`` on the PyAV source).
``source.metadata`` is a :class:`VideoMetadata`. Only kept frames are converted to RGB, and the PyAV
source decodes only around them where the file allows exact seeking (:mod:`.seeking`).

Modules: :mod:`.frames` (frames and colour), :mod:`.metadata`, :mod:`.sampler` (which frames),
:mod:`.seeking` (frame table, seek and decode forward), :mod:`.pyav`, :mod:`.decord`, :mod:`.images`,
:mod:`.gpu` (NVDEC).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from contrique_video.decode import decord as _decord  # noqa: F401  (registers the decoder)
from contrique_video.decode.base import STDIN, FrameSource, check_path
from contrique_video.decode.decord import DecordSource
from contrique_video.decode.frames import Frame, frame_to_rgb
from contrique_video.decode.gpu import parse_device
from contrique_video.decode.images import ImageSource
from contrique_video.decode.metadata import VideoMetadata
from contrique_video.decode.pyav import PyAVSource
from contrique_video.decode.registry import DECODERS
from contrique_video.errors import InputError, UnsupportedError

log = logging.getLogger("contrique_video")

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


def open_source(path: str | os.PathLike, decoder: str = "pyav", threads: int = 0, device: str = "cpu",
                max_pixels: int | None = None, seek: bool = True) -> FrameSource:
    """Open a video, a still image, or ``"-"`` (a stream on stdin) for decoding.

    ``decoder`` names a registered decoder (:data:`DECODERS`: "pyav", the default, or "decord") for videos;
    stills always use Pillow.
    ``threads`` is the decoder thread count (0: FFmpeg chooses). ``device`` "cuda" (or "cuda:N") decodes
    videos with NVDEC where FFmpeg can, else on the CPU with a warning (see :mod:`.gpu`).
    ``max_pixels`` refuses a still larger than that from its header, before it is decoded.
    ``seek=False`` makes the PyAV decoder go through the whole stream instead of seeking to the sampled frames.
    Raises :class:`InputError` / :class:`UnsupportedError` with a one-line message.
    """
    name = str(decoder).strip().lower() if decoder is not None else "pyav"
    if name not in DECODERS:
        raise InputError(f"unknown decoder {decoder!r}; available decoders: {', '.join(DECODERS)}")
    spec = DECODERS[name]
    try:
        threads = int(threads)
    except (TypeError, ValueError):
        raise InputError(f"threads must be a whole number, got {threads!r}") from None
    if threads < 0:
        raise InputError(f"threads must be >= 0, got {threads}")
    kind, _ = parse_device(device)
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text == STDIN:
        if not spec.stdin:
            raise UnsupportedError(f"{name} cannot read from stdin; use --decoder pyav for piped input")
        return spec.opener(STDIN, threads, device, False)
    p = Path(text)
    check_path(p)
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource(p, max_pixels)
    if kind == "cuda" and not spec.gpu:
        log.warning("--device cuda: the %s decoder decodes on the CPU; use --decoder pyav for GPU decoding", name)
    return spec.opener(p, threads, device, seek)

__all__ = [
    "DECODERS",
    "IMAGE_EXTENSIONS",
    "DecordSource",
    "Frame",
    "FrameSource",
    "ImageSource",
    "PyAVSource",
    "VideoMetadata",
    "frame_to_rgb",
    "open_source",
]

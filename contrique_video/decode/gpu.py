"""Decoding on the GPU (``--device cuda``): FFmpeg's NVDEC decoders through PyAV's ``HWAccel`` (PyAV >= 14).

:func:`open_container` is what the source layer calls instead of ``av.open``. On ``cuda`` it asks FFmpeg for
a CUDA device and attaches it to the decoder. When that cannot work -- no GPU, a driver or an FFmpeg build
without CUDA, a codec NVDEC does not decode -- it says so once (a warning) and decodes on the CPU, exactly as
``--device cpu`` does, so the frames are the same. A stream NVDEC turns down mid-way (an unsupported
profile, say) is decoded in software by FFmpeg itself (``allow_software_fallback``), which logs it.

Decoded frames are downloaded to host memory: the official preprocessing makes the half-scale copy with
PIL's bicubic resize on the 8-bit RGB frame, and the colour conversion (matrix, range, >8-bit) is done on the
host, so handing the GPU surface to the model would change the features. What the GPU saves here is the
decoding itself.
"""

from __future__ import annotations

import logging
from functools import lru_cache

log = logging.getLogger("contrique_video")

DEVICES = ("cpu", "cuda")
_warned: set[str] = set()


def parse_device(device: str | None) -> tuple[str, int | None]:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> (kind, index); anything else is an error naming the choices."""
    from contrique_video.errors import InputError

    text = str(device or "cpu").strip().lower()
    kind, _, index = text.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise InputError(f"unknown device {device!r}; available: cpu, cuda, cuda:N")
    return kind, int(index) if index else None


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


@lru_cache(maxsize=None)
def cuda_decode_problem(index: int | None, codec: str = "h264") -> str | None:
    """Why FFmpeg cannot decode ``codec`` on CUDA device ``index`` here, or None when it can (checked once)."""
    import av
    from av.codec.hwaccel import HWAccel, hwdevices_available

    if "cuda" not in hwdevices_available():
        return "this FFmpeg build has no CUDA support"
    try:
        HWAccel("cuda", device=None if index is None else str(index)).create(av.Codec(codec, "r"))
    except NotImplementedError:
        return f"FFmpeg has no CUDA (NVDEC) decoder for {codec}"
    except (av.FFmpegError, OSError, ValueError) as exc:
        return f"no CUDA device for decoding ({getattr(exc, 'strerror', None) or exc})"
    return None


def hwaccel_for(device: str | None, codec: str = "h264"):
    """The ``HWAccel`` to decode ``codec`` on, or None (CPU decoding, with a warning when a GPU was asked for)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return None
    from av.codec.hwaccel import HWAccel

    problem = cuda_decode_problem(index, codec)
    if problem is not None:
        _warn_once(f"--device cuda: {problem}; decoding on the CPU")
        return None
    return HWAccel("cuda", device=None if index is None else str(index), allow_software_fallback=True)


def open_container(source, device: str | None = "cpu", **options):
    """``av.open(source, mode="r", **options)``, decoding on the GPU where ``device`` asks and it can.

    The device is probed once per process (with H.264). A video stream whose codec has no CUDA decoder is
    decoded in software by PyAV, as on the CPU; that is reported once per codec.
    """
    import av

    hwaccel = hwaccel_for(device)
    if hwaccel is None:
        return av.open(source, mode="r", **options)
    container = av.open(source, mode="r", hwaccel=hwaccel, **options)
    for stream in container.streams.video:
        cc = stream.codec_context
        cover_art = int(stream.disposition) & int(type(stream.disposition).attached_pic)
        if cc is not None and not cc.is_hwaccel and not cover_art:
            _warn_once(f"--device cuda: FFmpeg has no CUDA (NVDEC) decoder for {cc.name}; decoding it on the CPU")
    return container

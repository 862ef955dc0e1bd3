"""Compression and scaling distortions: JPEG, JPEG 2000, one-frame H.264/HEVC intra encodes, rescaling."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
from PIL import Image, features

from contrique_video.errors import UnsupportedError
from contrique_video.training.distortions.pixels import from_pil, to_pil

_J2K_HEADER_BYTES = 200


def jpeg2000(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    if not features.check("jpg_2000"):
        raise UnsupportedError("jpeg2000 distortion needs Pillow built with OpenJPEG")
    h, w = img.shape[:2]
    nres = int(max(1, min(6, np.floor(np.log2(min(h, w))) - 2)))
    # p is the ratio of raw 24-bit data to coded payload; OpenJPEG's rate also
    # counts the codestream headers (~150-200 bytes), which would leave nothing
    # for small images, so the header budget is added on top.
    raw = 3.0 * h * w
    rate = raw / (raw / p + _J2K_HEADER_BYTES)
    buf = io.BytesIO()
    to_pil(img).save(
        buf,
        "JPEG2000",
        quality_mode="rates",
        quality_layers=[rate],
        irreversible=True,
        num_resolutions=nres,
        no_jp2=True,
    )
    buf.seek(0)
    with Image.open(buf) as im:
        return from_pil(im)


def jpeg(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    to_pil(img).save(buf, "JPEG", quality=int(p), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return from_pil(im)


def roundtrip(enc, frames: list, decoder: str, threads: int | None = None) -> list:
    """Encode PyAV frames with the opened encoder ``enc`` and decode the packets in memory with ``decoder``.

    FFmpeg's encoder chatter is kept below errors meanwhile; PyAV's logging stays off if it was off (turning
    it on for the whole process makes later decodes slow and noisy)."""
    import av

    prev = av.logging.get_level()
    if prev is not None and prev > av.logging.ERROR:
        av.logging.set_level(av.logging.ERROR)
    try:
        packets = []
        for frame in frames:
            packets += list(enc.encode(frame))
        packets += list(enc.encode(None))
        dec = av.CodecContext.create(decoder, "r")
        if threads is not None:
            dec.thread_count = threads
        out = []
        for pkt in packets:
            out += dec.decode(pkt)
        out += dec.decode(None)
    finally:
        if prev is not None and prev > av.logging.ERROR:
            av.logging.set_level(prev)
    return out


def _codec(img, codec: str, qp: int) -> np.ndarray:
    import av  # imported lazily: only the codec classes need it

    h, w = img.shape[:2]
    ph, pw = h + (h & 1), w + (w & 1)
    src = img if (ph, pw) == (h, w) else np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height = pw, ph
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, 25)
    enc.thread_count = 1
    if codec == "libx264":
        enc.options = {"qp": str(qp), "preset": "veryfast", "threads": "1"}
    else:
        enc.options = {
            "preset": "ultrafast",
            "x265-params": f"qp={qp}:sao=1:log-level=none:pools=none:frame-threads=1",
        }
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(src), format="rgb24")
    frames = roundtrip(enc, [frame.reformat(format="yuv420p")], "h264" if codec == "libx264" else "hevc", threads=1)
    if not frames:
        raise UnsupportedError(f"{codec} produced no decodable frame")
    out = frames[0].to_ndarray(format="rgb24")
    return np.ascontiguousarray(out[:h, :w])


def h264(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return _codec(img, "libx264", int(p))


def hevc(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return _codec(img, "libx265", int(p))


_DOWN = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
_UP = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


def rescale(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    down = _DOWN[int(rng.integers(0, len(_DOWN)))]
    up = _UP[int(rng.integers(0, len(_UP)))]
    h, w = img.shape[:2]
    size = (max(2, int(round(w / p))), max(2, int(round(h / p))))
    return from_pil(to_pil(img).resize(size, down).resize((w, h), up))

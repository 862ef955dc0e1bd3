"""Small, deterministic test media written with PyAV (and Pillow for stills).

Other test modules import these helpers, so keep the signatures stable:

- :func:`make_clip` writes a short video whose pixels are known exactly before encoding
  (YUV planes are computed here with numpy from a known RGB picture and a chosen matrix
  and range, so colour tests do not depend on swscale doing the forward conversion).
- :func:`make_image` writes a still (PNG/JPEG/WebP/TIFF/BMP), optionally 16-bit or with
  an EXIF orientation tag.
- :func:`make_audio` writes an audio-only file, :func:`make_text` a non-media file.
- :func:`expected_times` gives the presentation times a clip was written with.
- :func:`rgb_to_ycbcr` / :func:`ycbcr_to_rgb` are reference colour conversions.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

# Luma coefficients (Kr, Kb) of the matrices the tests use.
KR_KB = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
}

# FFmpeg's AVColorSpace / AVColorRange values for tagging frames and encoders.
_AVCOL_SPC = {"bt709": 1, "bt601": 6, "bt2020": 9}
_AVCOL_PRI = {"bt709": 1, "bt601": 6, "bt2020": 9}
_AVCOL_TRC = {"bt709": 1, "bt601": 6, "bt2020": 14}
_AVCOL_TRC_HDR = {"pq": 16, "hlg": 18}  # SMPTE ST 2084, ARIB STD-B67
_AVCOL_RANGE = {"tv": 1, "pc": 2}

# Frame durations (milliseconds) of variable-frame-rate clips, cycled.
VFR_DURATIONS_MS = (40, 20, 70, 30, 50, 10)

DEFAULT_COLOR = (200, 60, 30)


# --------------------------------------------------------------------------- colour maths


def rgb_to_ycbcr(rgb, colorspace: str = "bt709", color_range: str = "tv", bits: int = 8) -> np.ndarray:
    """RGB (0..255 floats or ints, last axis 3) to Y'CbCr code values (floats, not rounded)."""
    kr, kb = KR_KB[colorspace]
    kg = 1.0 - kr - kb
    rgb = np.asarray(rgb, dtype=np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = kr * r + kg * g + kb * b
    cb = (b - y) / (2.0 * (1.0 - kb))
    cr = (r - y) / (2.0 * (1.0 - kr))
    scale = float(1 << (bits - 8))
    if color_range == "tv":
        out = np.stack([16 + 219 * y, 128 + 224 * cb, 128 + 224 * cr], axis=-1) * scale
    else:
        top = (1 << bits) - 1
        out = np.stack([top * y, (128 + 255 * cb) * scale, (128 + 255 * cr) * scale], axis=-1)
    return out


def ycbcr_to_rgb(ycbcr, colorspace: str = "bt709", color_range: str = "tv", bits: int = 8) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`; returns RGB floats on a 0..255 scale (unclipped)."""
    kr, kb = KR_KB[colorspace]
    kg = 1.0 - kr - kb
    v = np.asarray(ycbcr, dtype=np.float64)
    scale = float(1 << (bits - 8))
    if color_range == "tv":
        y = (v[..., 0] / scale - 16) / 219
        cb = (v[..., 1] / scale - 128) / 224
        cr = (v[..., 2] / scale - 128) / 224
    else:
        y = v[..., 0] / ((1 << bits) - 1)
        cb = (v[..., 1] / scale - 128) / 255
        cr = (v[..., 2] / scale - 128) / 255
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / kg
    return np.stack([r, g, b], axis=-1) * 255.0


def default_matrix(height: int) -> str:
    """The matrix the library assumes for untagged video: BT.709 for HD, else BT.601."""
    return "bt709" if height >= 720 else "bt601"


# --------------------------------------------------------------------------- pictures


def picture(content: str, index: int, width: int, height: int, color=DEFAULT_COLOR) -> np.ndarray:
    """An HxWx3 uint8 RGB picture for frame ``index``.

    ``moving``: a diagonal gradient that drifts with the frame index, colour bars along
    the bottom, and a white 8x8 marker in the top-left corner (for rotation tests);
    ``flat``: every pixel ``color``; ``ramp``: a horizontal grey ramp 0..255 (many
    distinct levels, for bit-depth tests); ``bars``: static colour bars plus the marker.
    """
    if content == "flat":
        return np.broadcast_to(np.asarray(color, np.uint8), (height, width, 3)).copy()
    if content == "ramp":
        row = np.linspace(0, 255, width)
        return np.repeat(np.repeat(row[None, :, None], height, 0), 3, 2).round().astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((height, width, 3), np.float64)
    shift = 0 if content == "bars" else index * 7
    out[..., 0] = (xx * 2 + shift) % 256
    out[..., 1] = (yy * 3 + shift * 0.5) % 256
    out[..., 2] = 128 + 100 * np.sin((xx + yy + shift) / 9.0)
    bars = [(235, 235, 16), (16, 235, 235), (16, 235, 16), (235, 16, 235), (235, 16, 16), (16, 16, 235)]
    bar_h = max(2, height // 4)
    bar_w = max(1, width // len(bars))
    for k, c in enumerate(bars):
        out[height - bar_h :, k * bar_w : (k + 1) * bar_w] = c
    m = min(8, height // 4, width // 4)
    out[:m, :m] = 255
    out[m : 2 * m, :m] = 0
    return np.clip(out, 0, 255).round().astype(np.uint8)


def _subsample(plane: np.ndarray, sx: int, sy: int) -> np.ndarray:
    h, w = plane.shape
    return plane.reshape(h // sy, sy, w // sx, sx).mean(axis=(1, 3))


def _yuv_frame(rgb: np.ndarray, pix_fmt: str, colorspace: str, color_range: str) -> av.VideoFrame:
    fmt = av.VideoFormat(pix_fmt)
    bits = fmt.components[0].bits
    h, w, _ = rgb.shape
    ycc = rgb_to_ycbcr(rgb, colorspace, color_range, bits)
    sx = w // fmt.chroma_width(w)
    sy = h // fmt.chroma_height(h)
    planes = [ycc[..., 0], _subsample(ycc[..., 1], sx, sy), _subsample(ycc[..., 2], sx, sy)]
    dtype = np.uint8 if bits <= 8 else np.uint16
    top = (1 << bits) - 1
    frame = av.VideoFrame(w, h, pix_fmt)
    for plane, data in zip(frame.planes, planes):
        data = np.clip(np.round(data), 0, top).astype(dtype)
        buf = np.frombuffer(plane, dtype=dtype).reshape(plane.height, -1)
        buf[:, : data.shape[1]] = data
    return frame


def _rgb_family(pix_fmt: str) -> bool:
    fmt = av.VideoFormat(pix_fmt)
    return fmt.is_rgb or len(fmt.components) < 3


# --------------------------------------------------------------------------- writers


def expected_times(frames: int, fps: float = 24, vfr: bool = False) -> list[float]:
    """Presentation times (seconds from the first frame) that :func:`make_clip` writes."""
    if vfr:
        t, out = 0, []
        for i in range(frames):
            out.append(t / 1000.0)
            t += VFR_DURATIONS_MS[i % len(VFR_DURATIONS_MS)]
        return out
    return [i / fps for i in range(frames)]


def make_clip(
    path,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    size: tuple[int, int] = (96, 64),
    frames: int = 12,
    fps: float = 24,
    vfr: bool = False,
    rotation: int | None = None,
    hflip: bool = False,
    color_range: str | None = None,
    colorspace: str | None = None,
    content: str = "moving",
    color=DEFAULT_COLOR,
    gop: int | None = None,
    bframes: int | None = None,
    options: dict | None = None,
    format: str | None = None,
    transfer: str | None = None,
) -> Path:
    """Write a short clip and return its path.

    ``size`` is (width, height). ``colorspace`` ("bt601" | "bt709" | "bt2020") and
    ``color_range`` ("tv" | "pc") are both used to compute the YUV planes and written as
    tags; when left None the clip is untagged and its planes use the library's default
    assumption (:func:`default_matrix`, limited range). ``rotation`` is a display-matrix
    rotation in degrees counter-clockwise (PyAV's ``set_display_rotation``; needs MP4/MOV).
    ``vfr`` writes PTS in milliseconds with uneven gaps (:data:`VFR_DURATIONS_MS`).
    ``gop`` forces a fixed key-frame interval (no scene-cut key frames).
    ``transfer`` ("pq" | "hlg") tags an HDR transfer function (the pixels stay as computed).
    """
    path = Path(path)
    width, height = size
    container = av.open(str(path), "w", format=format)
    try:
        opts = dict(options or {})
        rate = Fraction(fps).limit_denominator(1001)
        if codec == "libx264":
            params = []
            if gop:
                params += [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"]
            if bframes is not None:
                params.append(f"bframes={bframes}")
            if params:
                opts["x264-params"] = ":".join(params)
            opts.setdefault("preset", "fast")
            opts.setdefault("crf", "12")
        elif codec == "libx265":
            params = ["log-level=error"]
            if gop:
                params += [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"]
            if bframes is not None:
                params.append(f"bframes={bframes}")
            opts["x265-params"] = ":".join(params)
            opts.setdefault("preset", "ultrafast")
            opts.setdefault("crf", "12")
        elif codec == "libvpx-vp9":
            opts.setdefault("deadline", "realtime")
            opts.setdefault("cpu-used", "8")
            opts.setdefault("crf", "20")
            opts.setdefault("b", "0")
        stream = container.add_stream(codec, rate=rate, options=opts)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        cc = stream.codec_context
        if gop:
            cc.gop_size = gop
        if bframes is not None and codec not in ("libx264", "libx265"):
            cc.max_b_frames = bframes
        if codec in ("mpeg4",):
            cc.bit_rate = 2_000_000
            cc.qmin, cc.qmax = 2, 4
        if vfr:
            cc.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        rgb_family = _rgb_family(pix_fmt)
        matrix = colorspace or default_matrix(height)
        rng = color_range or ("pc" if pix_fmt.startswith("yuvj") else "tv")
        if colorspace:
            cc.colorspace = _AVCOL_SPC[colorspace]
            cc.color_primaries = _AVCOL_PRI[colorspace]
            cc.color_trc = _AVCOL_TRC[colorspace]
        if transfer:
            cc.color_trc = _AVCOL_TRC_HDR[transfer]
        if color_range:
            cc.color_range = _AVCOL_RANGE[color_range]
        if rotation is not None or hflip:
            stream.set_display_rotation(rotation or 0, hflip=hflip)
        times = expected_times(frames, fps, vfr)
        for i in range(frames):
            rgb = picture(content, i, width, height, color)
            if content == "ramp" and not rgb_family:
                # unrounded, so a >8-bit format carries more than 256 grey levels
                rgb = np.broadcast_to(np.linspace(0, 255, width)[None, :, None], (height, width, 3))
            if rgb_family:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            else:
                frame = _yuv_frame(rgb, pix_fmt, matrix, rng)
                if colorspace:
                    frame.colorspace = _AVCOL_SPC[colorspace]
                if color_range:
                    frame.color_range = _AVCOL_RANGE[color_range]
                if transfer:
                    frame.color_trc = _AVCOL_TRC_HDR[transfer]
            if vfr:
                frame.pts = round(times[i] * 1000)
                frame.time_base = Fraction(1, 1000)
            else:
                frame.pts = i
                frame.time_base = Fraction(1) / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return path


def make_image(
    path,
    *,
    size: tuple[int, int] = (96, 64),
    content: str = "bars",
    color=DEFAULT_COLOR,
    mode: str = "RGB",
    exif_orientation: int | None = None,
) -> Path:
    """Write a still image; the format follows the extension.

    ``mode``: "RGB", "RGBA", "L", "I;16" (16-bit grey PNG, via Pillow) or "RGB16"
    (16-bit-per-channel colour PNG, written with FFmpeg's PNG encoder because Pillow
    cannot write it; its values are the 8-bit picture times 257 plus a small ramp so it
    has more than 256 levels). ``exif_orientation`` (1..8) is stored as an EXIF tag
    (Pillow-written modes only; ignored for "RGB16").
    """
    path = Path(path)
    width, height = size
    rgb = picture(content, 0, width, height, color)
    if mode == "RGB16":
        data = rgb16_picture(content, width, height, color)
        container = av.open(str(path), "w", format="image2")
        try:
            stream = container.add_stream("png", rate=1)
            stream.width, stream.height, stream.pix_fmt = width, height, "rgb48be"
            frame = av.VideoFrame.from_ndarray(data, format="rgb48le")
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
        return path
    if mode == "I;16":
        img = Image.fromarray(rgb16_picture(content, width, height, color)[..., 0])
    else:
        img = Image.fromarray(rgb).convert(mode)
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = int(exif_orientation)
        kwargs["exif"] = exif
    if path.suffix.lower() in (".jpg", ".jpeg"):
        kwargs["quality"] = 95
    img.save(path, **kwargs)
    return path


def rgb16_picture(content: str, width: int, height: int, color=DEFAULT_COLOR) -> np.ndarray:
    """The 16-bit picture :func:`make_image` writes for ``mode="RGB16"`` / ``"I;16"``."""
    base = picture(content, 0, width, height, color).astype(np.uint32) * 257
    ramp = (np.arange(width, dtype=np.uint32) * 37 % 200)[None, :, None]
    return np.clip(base.astype(np.int64) - ramp, 0, 65535).astype(np.uint16)


def make_audio(path, *, seconds: float = 0.5, rate: int = 8000) -> Path:
    """Write an audio-only file (e.g. .wav or .m4a): a media file with no video stream."""
    path = Path(path)
    container = av.open(str(path), "w")
    try:
        codec = "pcm_s16le" if path.suffix.lower() == ".wav" else "aac"
        stream = container.add_stream(codec, rate=rate)
        n = int(seconds * rate)
        tone = (np.sin(np.arange(n) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16)
        step = 1024
        for start in range(0, n, step):
            chunk = tone[start : start + step]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return path


def make_text(path, text: str = "this is not a video\n") -> Path:
    path = Path(path)
    path.write_text(text)
    return path


def codec_available(name: str) -> bool:
    return name in av.codecs_available


__all__ = [
    "DEFAULT_COLOR",
    "KR_KB",
    "VFR_DURATIONS_MS",
    "codec_available",
    "default_matrix",
    "expected_times",
    "make_audio",
    "make_clip",
    "make_image",
    "make_text",
    "picture",
    "rgb16_picture",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
]

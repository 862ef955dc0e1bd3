#!/usr/bin/env python3
"""Make the bundled README sample, ``samples/sample.mp4``.

3.5 s, 640x360, 24 fps, H.264 (CRF 23, yuv420p, BT.709 tags) in MP4 with the index at the
front. The pictures are slow pans and zooms over photographs bundled with scikit-image:

    0.00-1.00 s  astronaut, slow pan            clean
    1.00-1.75 s  coffee, slow pan               clean
    1.75-2.62 s  chelsea (cat), slow zoom       heavily compressed first (x264 CRF 44)
    2.62-3.50 s  rocket, slow zoom              heavily compressed and increasingly blurred

so per-frame quality scores drop visibly in the second half.

The script is deterministic: fixed geometry, single-threaded x264, and bit-exact muxing,
so running it again with the same PyAV/FFmpeg build gives a byte-identical file.

Usage: python scripts/make_sample.py [OUTPUT]   (default: samples/sample.mp4)
"""

from __future__ import annotations

import argparse
import io
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageFilter
from skimage import data

WIDTH, HEIGHT, FPS = 640, 360, 24
SECONDS = 3.5
CRF = 23
DEGRADE_CRF = 44
MAX_BYTES = 1_000_000


def _canvas(name: str, min_width: int) -> Image.Image:
    """A scikit-image photo as a PIL image at least ``min_width`` wide and tall enough."""
    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    scale = max(min_width / img.width, (HEIGHT * 1.4) / img.height, 1.0)
    size = (round(img.width * scale), round(img.height * scale))
    return img.resize(size, Image.Resampling.LANCZOS)


def _view(img: Image.Image, cx: float, cy: float, zoom: float) -> Image.Image:
    """The 640x360 window centred at (cx, cy) (canvas pixels), magnified by ``zoom``."""
    s = 1.0 / zoom  # canvas pixels per output pixel
    x0 = cx - WIDTH * s / 2
    y0 = cy - HEIGHT * s / 2
    return img.transform(
        (WIDTH, HEIGHT), Image.Transform.AFFINE, (s, 0, x0, 0, s, y0), resample=Image.Resampling.BICUBIC
    )


def _ease(t: float) -> float:
    return 0.5 - 0.5 * np.cos(np.pi * min(max(t, 0.0), 1.0))


def _pan(img: Image.Image, t: float, cy: float, zoom: float = 1.0) -> Image.Image:
    """Left-to-right pan across the canvas at height ``cy`` (fraction of the height)."""
    half_w = WIDTH / zoom / 2
    x = half_w + (img.width - 2 * half_w) * (0.15 + 0.7 * _ease(t))
    y = img.height * cy
    return _view(img, x, y, zoom)


def _zoom(img: Image.Image, t: float, cx: float, cy: float, z0: float, z1: float) -> Image.Image:
    zoom = z0 + (z1 - z0) * _ease(t)
    return _view(img, img.width * cx, img.height * cy, zoom)


def pictures() -> tuple[list[np.ndarray], int]:
    """All frames as 360x640x3 uint8 arrays, and the index of the first one to degrade."""
    n = round(SECONDS * FPS)
    astronaut = _canvas("astronaut", 900)
    coffee = _canvas("coffee", 900)
    chelsea = _canvas("chelsea", 760)
    rocket = _canvas("rocket", 760)
    cuts = [0, 24, 42, 63, n]
    frames = []
    for i in range(n):
        if i < cuts[1]:
            img = _pan(astronaut, (i - cuts[0]) / (cuts[1] - cuts[0]), 0.3)
        elif i < cuts[2]:
            img = _pan(coffee, (i - cuts[1]) / (cuts[2] - cuts[1]), 0.45)
        elif i < cuts[3]:
            img = _zoom(chelsea, (i - cuts[2]) / (cuts[3] - cuts[2]), 0.45, 0.42, 1.0, 1.35)
        else:
            t = (i - cuts[3]) / (cuts[4] - cuts[3])
            img = _zoom(rocket, t, 0.5, 0.45, 1.0, 1.25)
            img = img.filter(ImageFilter.GaussianBlur(radius=0.5 + 3.0 * t))
        frames.append(np.asarray(img, dtype=np.uint8))
    return frames, cuts[2]


def _h264_stream(container, crf: int):
    stream = container.add_stream(
        "libx264",
        rate=FPS,
        options={"crf": str(crf), "preset": "medium", "tune": "film", "x264-params": "threads=1:keyint=48"},
    )
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    cc = stream.codec_context
    cc.thread_count = 1
    cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709
    cc.color_range = 1  # limited ("tv")
    return stream


def _to_frame(rgb: np.ndarray, pts: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", src_colorspace="ITU709", dst_colorspace="ITU709",
        src_color_range="JPEG", dst_color_range="MPEG",
    )
    frame.colorspace, frame.color_range = 1, 1
    frame.pts = pts
    frame.time_base = Fraction(1, FPS)
    return frame


def degrade(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Round-trip ``frames`` through a very low-quality x264 encode (blocking, smearing)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = _h264_stream(container, DEGRADE_CRF)
        for i, rgb in enumerate(frames):
            for packet in stream.encode(_to_frame(rgb, i)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buf.seek(0)
    out = []
    with av.open(buf, "r", format="matroska") as container:
        for frame in container.decode(video=0):
            out.append(
                frame.to_ndarray(
                    format="rgb24", src_colorspace="ITU709", dst_colorspace="ITU709",
                    src_color_range="MPEG", dst_color_range="JPEG",
                )
            )
    if len(out) != len(frames):
        raise RuntimeError(f"degrading pass returned {len(out)} frames, expected {len(frames)}")
    return out


def make_sample(path: Path) -> Path:
    frames, first_bad = pictures()
    frames = frames[:first_bad] + degrade(frames[first_bad:])
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(
        str(path), "w", format="mp4", container_options={"movflags": "+faststart", "fflags": "+bitexact"}
    ) as container:
        stream = _h264_stream(container, CRF)
        for i, rgb in enumerate(frames):
            for packet in stream.encode(_to_frame(rgb, i)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is {size} bytes, over the {MAX_BYTES}-byte budget")
    return path


def main(argv: list[str] | None = None) -> int:
    default = Path(__file__).resolve().parents[1] / "samples" / "sample.mp4"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?", type=Path, default=default)
    args = parser.parse_args(argv)
    path = make_sample(args.output)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB, {round(SECONDS * FPS)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

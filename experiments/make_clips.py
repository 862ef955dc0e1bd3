#!/usr/bin/env python3
"""Natural-looking test sources for CRF search and ladder checks: slow pans and zooms over scikit-image photos.
Answered: not a study: the natural-looking sources crf_check and vmaf_check generate.

Each content is one photo moved in its own way (pan speed, zoom, a little sensor-like grain on some), so
the contents differ in detail and motion the way real titles do. Sources are written near-losslessly
(x264 QP 4, BT.709 tags) at any size; the same arguments give the same pixels.

    python experiments/make_clips.py runs/clips --size 1920x1080 --seconds 4 --contents astronaut,coffee
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image
from skimage import data

# photo, (pan start x, pan end x, centre y) as fractions, (zoom start, zoom end), grain sigma
CONTENTS = {
    "astronaut": ("astronaut", (0.35, 0.65, 0.40), (1.6, 1.8), 0.0),
    "coffee": ("coffee", (0.30, 0.70, 0.50), (1.2, 1.2), 0.0),
    "chelsea": ("chelsea", (0.45, 0.55, 0.45), (1.0, 1.4), 2.0),
    "rocket": ("rocket", (0.40, 0.60, 0.50), (1.1, 1.0), 0.0),
    "hubble": ("hubble_deep_field", (0.20, 0.80, 0.50), (1.0, 1.0), 0.0),
    "retina": ("retina", (0.40, 0.60, 0.50), (1.0, 1.3), 0.0),
    "grass": ("grass", (0.25, 0.75, 0.50), (1.0, 1.0), 3.0),
    "motorcycle": ("stereo_motorcycle", (0.30, 0.60, 0.55), (1.0, 1.2), 0.0),
    "ihc": ("immunohistochemistry", (0.30, 0.70, 0.50), (1.2, 1.5), 0.0),
    "gravel": ("gravel", (0.30, 0.70, 0.50), (1.0, 1.1), 0.0),
}
# Textures shown at their native scale, mirror-tiled to cover the frame: sharp detail at any size.
TILED = {"gravel"}


def _ease(t: float) -> float:
    return 0.5 - 0.5 * np.cos(np.pi * min(max(t, 0.0), 1.0))


def frames(content: str, width: int, height: int, count: int) -> list[np.ndarray]:
    """``count`` RGB frames of one content at width x height."""
    photo, (x0, x1, cy), (z0, z1), grain = CONTENTS[content]
    pixels = getattr(data, photo)()
    pixels = pixels[0] if isinstance(pixels, tuple) else pixels  # stereo: the left view
    if content in TILED:
        reps = (int(np.ceil(1.6 * height / pixels.shape[0])), int(np.ceil(1.6 * width / pixels.shape[1])))
        pixels = np.pad(pixels, [(0, (r - 1) * n) for r, n in zip(reps, pixels.shape[:2])] + [(0, 0)] * (pixels.ndim - 2),
                        mode="symmetric")
    img = Image.fromarray(pixels).convert("RGB")
    base = 1.0 if content in TILED else max(width / img.width, height / img.height) * 1.15  # output px per canvas px
    rng = np.random.default_rng(len(content))
    out = []
    for i in range(count):
        t = _ease(i / max(1, count - 1))
        zoom = base * (z0 + (z1 - z0) * t)
        s = 1.0 / zoom
        cx = img.width * (x0 + (x1 - x0) * t)
        cx = min(max(cx, width * s / 2), img.width - width * s / 2)
        cyy = min(max(img.height * cy, height * s / 2), img.height - height * s / 2)
        view = img.transform((width, height), Image.Transform.AFFINE,
                             (s, 0, cx - width * s / 2, 0, s, cyy - height * s / 2), resample=Image.Resampling.BICUBIC)
        rgb = np.asarray(view, dtype=np.float32)
        if grain:
            rgb = rgb + rng.normal(0, grain, rgb.shape)
        out.append(np.clip(rgb, 0, 255).round().astype(np.uint8))
    return out


def write_clip(content: str, path: Path, width: int, height: int, seconds: float, fps: int = 24) -> Path:
    """A near-lossless BT.709 H.264 source of one content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"qp": "4", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        cc = stream.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = 1
        cc.color_range = 1
        for i, rgb in enumerate(frames(content, width, height, round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", src_colorspace="ITU709", dst_colorspace="ITU709",
                src_color_range="JPEG", dst_color_range="MPEG")
            frame.colorspace, frame.color_range = 1, 1
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--contents", default=",".join(CONTENTS))
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    for name in args.contents.split(","):
        path = write_clip(name, args.outdir / f"{name}.mp4", width, height, args.seconds, args.fps)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

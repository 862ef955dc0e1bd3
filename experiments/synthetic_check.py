"""Can a cheap per-frame test tell synthetic pictures (test patterns) from natural ones? (issue #29, item 10)

    python experiments/synthetic_check.py --clips /tmp/syn --clive ../shared/data/clive-train/images \
        --natural samples/sample.mp4 /tmp/contrique-memory-bench/clip_*p.mp4 \
        --out results/synthetic_check.csv

Three candidate statistics per frame, medians over 8 frames of a clip (one for a still): ``flat``, the share
of 8x8 blocks whose pixels are all identical; ``colours``, distinct RGB colours per pixel; ``sigma``, the noise
level (Immerkaer's Laplacian estimate on luma). The synthetic clips are ffmpeg's lavfi sources (testsrc2,
testsrc, smptebars, smptehdbars, pal75bars, rgbtestsrc, yuvtestsrc, mandelbrot, colorspectrum, cellauto,
life) at 640x360, 2 s, x264 CRF 0/28/40, written into --clips with e.g.
``ffmpeg -f lavfi -i testsrc2=size=640x360:rate=24 -t 2 -c:v libx264 -crf 28 -pix_fmt yuv420p testsrc2_crf28.mp4``;
files named ``nat_*`` there count as natural, as do the --natural files. The clive-train images are natural.

Result (results/synthetic_check.csv): no statistic separates the two, so ``score`` adds no warning. Natural
photos reach a flat share of 0.79 (a dark tunnel, crushed blacks) above testsrc2's 0.55-0.83; upscaled natural
video has fewer colours per pixel (0.009) than testsrc2 (0.02-0.06); mandelbrot and colorspectrum have the
noise level and colour count of natural video, and a black frame has none.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
from scipy.signal import convolve2d

from contrique_video.decode import open_source
from contrique_video.decode.sampler import Sampling

LAPLACIAN = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def frame_stats(rgb: np.ndarray) -> tuple[float, float, float]:
    """(flat block share, distinct colours per pixel, noise sigma) of one 8-bit RGB frame."""
    y = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)
    h, w = (y.shape[0] // 8) * 8, (y.shape[1] // 8) * 8
    blocks = rgb[:h, :w].reshape(h // 8, 8, w // 8, 8, 3)
    flat = float((blocks.max(axis=(1, 3)) == blocks.min(axis=(1, 3))).all(axis=-1).mean())
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    colours = len(np.unique(packed)) / packed.size
    sigma = float(np.sqrt(np.pi / 2) / (6 * (h - 2) * (w - 2)) * np.abs(convolve2d(y, LAPLACIAN, "valid")).sum())
    return flat, colours, sigma


def input_stats(path: str, frames: int = 8) -> np.ndarray:
    with open_source(path) as src:
        rows = [frame_stats(f.rgb) for f in src.frames(Sampling("frames", frames))]
    return np.median(np.array(rows), axis=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", required=True, help="folder of the synthetic (and nat_*) clips")
    ap.add_argument("--natural", nargs="*", default=["samples/sample.mp4"], help="natural video files")
    ap.add_argument("--clive", required=True, help="the clive-train images folder")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    inputs = [("natural" if os.path.basename(p).startswith("nat_") else "synthetic", p)
              for p in sorted(glob.glob(os.path.join(args.clips, "*.mp4")))]
    inputs += [("natural", p) for p in args.natural] + [("clive", p) for p in sorted(glob.glob(os.path.join(args.clive, "*")))]
    with open(args.out, "w") as out:
        out.write("kind,name,flat,colours,sigma\n")
        for kind, path in inputs:
            flat, colours, sigma = input_stats(path)
            out.write(f"{kind},{os.path.basename(path)},{flat:.4f},{colours:.5f},{sigma:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Spatial, sharpness and contrast distortions: jitter, moved patches, pixelation, grey-level quantisation,
colour blocks, over-sharpening and contrast curves."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from contrique_video.training.distortions.pixels import from_pil, to_pil

# Draws made for every level of a type, so that with one seed the levels differ only in how many are used:
# the top level of PARAMS["non_eccentricity_patch"] and PARAMS["color_block"] (checked in the package).
PATCH_DRAWS = 45
BLOCK_DRAWS = 10


def jitter(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    off = np.rint(rng.standard_normal((2, h, w), dtype=np.float32) * p).astype(np.intp)
    yy = np.clip(np.arange(h)[:, None] + off[0], 0, h - 1)
    xx = np.clip(np.arange(w)[None, :] + off[1], 0, w - 1)
    return img[yy, xx]


def _patch_side(img: np.ndarray, frac: int) -> int:
    return max(3, int(round(min(img.shape[:2]) / frac)))


def non_eccentricity_patch(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    s = _patch_side(img, 16)
    nmax = PATCH_DRAWS
    # Same draws for every level: level k moves the first PARAMS[k] of them.
    sy = rng.integers(0, h - s + 1, nmax)
    sx = rng.integers(0, w - s + 1, nmax)
    mag = rng.integers(1, s + 1, (2, nmax))
    sgn = np.where(rng.random((2, nmax)) < 0.5, -1, 1)
    ty = np.clip(sy + sgn[0] * mag[0], 0, h - s)
    tx = np.clip(sx + sgn[1] * mag[1], 0, w - s)
    out = img.copy()
    for i in range(int(p)):
        out[ty[i] : ty[i] + s, tx[i] : tx[i] + s] = img[sy[i] : sy[i] + s, sx[i] : sx[i] + s]
    return out


def pixelate(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    small = to_pil(img).resize((max(1, -(-w // p)), max(1, -(-h // p))), Image.Resampling.BOX)
    return from_pil(small.resize((w, h), Image.Resampling.NEAREST))


def quantization(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Scalar quantisation with ``p`` levels at multi-level thresholds.

    The thresholds minimise the within-class variance of all values pooled
    (the multi-level Otsu criterion), found by 1-D Lloyd iterations on the
    histogram from an equal-population start; values map to their class mean.
    """
    k = int(p)
    hist = np.bincount(img.ravel(), minlength=256).astype(np.float64)
    vals = np.arange(256, dtype=np.float64)
    cdf = np.cumsum(hist) / hist.sum()
    qs = (np.arange(k) + 0.5) / k
    centers = np.searchsorted(cdf, qs).astype(np.float64)
    centers = np.maximum.accumulate(centers + np.arange(k) * 1e-3)
    for _ in range(20):
        thr = (centers[1:] + centers[:-1]) / 2
        lab = np.searchsorted(thr, vals)
        wsum = np.bincount(lab, hist, minlength=k)
        vsum = np.bincount(lab, hist * vals, minlength=k)
        new = np.where(wsum > 0, vsum / np.maximum(wsum, 1e-12), centers)
        if np.allclose(new, centers, atol=1e-3):
            break
        centers = new
    thr = (centers[1:] + centers[:-1]) / 2
    lut = np.clip(np.rint(centers[np.searchsorted(thr, vals)]), 0, 255).astype(np.uint8)
    return lut[img]


def color_block(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    s = _patch_side(img, 10)
    nmax = BLOCK_DRAWS
    ys = rng.integers(0, h - s + 1, nmax)
    xs = rng.integers(0, w - s + 1, nmax)
    cols = rng.integers(0, 256, (nmax, 3)).astype(np.uint8)
    out = img.copy()
    for i in range(int(p)):
        out[ys[i] : ys[i] + s, xs[i] : xs[i] + s] = cols[i]
    return out


def high_sharpen(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return from_pil(to_pil(img).filter(ImageFilter.UnsharpMask(radius=2, percent=int(p), threshold=0)))


def contrast_change(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    up = rng.random() < 0.5
    x = np.arange(256, dtype=np.float64)
    m = float(img.mean())
    if up:
        # Normalised logistic S-curve, steepest at the image mean, fixed end points.
        g = 9.0
        sig = lambda t: 1.0 / (1.0 + np.exp(-g * (t - m) / 255.0))  # noqa: E731
        target = 255.0 * (sig(x) - sig(0.0)) / (sig(255.0) - sig(0.0))
    else:
        target = np.full(256, m)
    lut = np.clip(np.rint(x + p * (target - x)), 0, 255).astype(np.uint8)
    return lut[img]

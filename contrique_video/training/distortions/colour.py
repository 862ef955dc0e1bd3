"""Colour and brightness distortions: diffusion, shift, quantisation, saturation, lightness and mean shift."""

from __future__ import annotations

import numpy as np
from PIL import Image

from contrique_video.training.distortions.pixels import (
    from_pil,
    gauss_float,
    lab2rgb,
    luma,
    rgb2lab,
    to_f32,
    to_pil,
    to_u8,
    vmax,
)


def color_diffusion(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    lab = rgb2lab(img)
    lab[..., 1:] = gauss_float(np.ascontiguousarray(lab[..., 1:]), p)
    return lab2rgb(lab)


def color_shift(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    # Direction of the green-channel displacement (a unit vector scaled by p).
    angle = rng.uniform(0.0, 2.0 * np.pi)
    x = to_f32(img)
    # Edge mask: gradient magnitude of the luma, robustly normalised to 0..1.
    gy, gx = np.gradient(luma(x))
    gm = np.hypot(gy, gx)
    lo, hi = np.quantile(gm[::2, ::2], [0.01, 0.99])
    e = np.clip((gm - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    g_shift = _shift_bilinear(x[..., 1], p * np.sin(angle), p * np.cos(angle))
    out = x
    out[..., 1] = e * g_shift + (1.0 - e) * x[..., 1]
    return to_u8(out)


def _shift_bilinear(ch: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``out[y, x] = ch[y - dy, x - dx]`` with bilinear interpolation and edge replication."""
    h, w = ch.shape
    m = int(np.ceil(max(abs(dy), abs(dx)))) + 1
    pad = np.pad(ch, m, mode="edge")
    iy, ix = int(np.floor(m - dy)), int(np.floor(m - dx))
    fy, fx = np.float32(m - dy - iy), np.float32(m - dx - ix)
    top = (1 - fx) * pad[iy : iy + h, ix : ix + w] + fx * pad[iy : iy + h, ix + 1 : ix + 1 + w]
    bot = (1 - fx) * pad[iy + 1 : iy + 1 + h, ix : ix + w] + fx * pad[iy + 1 : iy + 1 + h, ix + 1 : ix + 1 + w]
    return (1 - fy) * top + fy * bot


def color_quantization(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    im = to_pil(img)
    pal = im.quantize(colors=int(p), method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    return from_pil(im.quantize(palette=pal, dither=Image.Dither.FLOYDSTEINBERG))


def color_saturation_hsv(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    # With H and V fixed, scaling S by k maps every channel c to V - k (V - c).
    x = to_f32(img)
    v = vmax(img).astype(np.float32)[..., None]
    return to_u8(v - p * (v - x))


def color_saturation_lab(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    lab = rgb2lab(img)
    lab[..., 1:] *= p
    return lab2rgb(lab)


def _lightness_gamma(img: np.ndarray, gamma: float) -> np.ndarray:
    # Tone curve L' = 100 (L / 100)^gamma on CIE Lab lightness; a*, b* are kept.
    lab = rgb2lab(img)
    light = np.clip(lab[..., 0], 0.0, 100.0) * np.float32(0.01)
    lab[..., 0] = np.power(light, np.float32(gamma)) * np.float32(100.0)
    return lab2rgb(lab)


def brighten(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return _lightness_gamma(img, p)


def darken(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return _lightness_gamma(img, p)


def mean_shift(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return to_u8(to_f32(img) + sign * p)

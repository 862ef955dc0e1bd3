"""Noise distortions: white (RGB and chroma), impulse, multiplicative, and noise then a denoiser."""

from __future__ import annotations

import numpy as np

from contrique_video.training.distortions.pixels import box_mean, to_f32, to_u8


def white_noise(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    n = rng.standard_normal(img.shape, dtype=np.float32)
    n *= p
    n += img
    return to_u8(n)


# Full-range BT.601 YCbCr (chroma centred on 0).
_RGB2YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32
)
_YCC2RGB = np.linalg.inv(_RGB2YCC).astype(np.float32)
# An offset (0, dCb, dCr) in YCbCr is this offset in RGB.
_CBCR2RGB = np.ascontiguousarray(_YCC2RGB[:, 1:].T)


def white_noise_color(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    n = rng.standard_normal(img.shape[:2] + (2,), dtype=np.float32)
    n *= p
    return to_u8(to_f32(img) + n @ _CBCR2RGB)


def impulse_noise(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(img.shape, dtype=np.float32)
    out = img.copy()
    out[u < p / 2] = 0
    out[(u >= p / 2) & (u < p)] = 255
    return out


def multiplicative_noise(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    n = rng.standard_normal(img.shape, dtype=np.float32)
    n *= p
    n += 1.0
    n *= img
    return to_u8(n)


def _guided_self(x: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Self-guided filter (He et al.) per channel: edge-preserving smoothing."""
    mean = box_mean(x, r)
    var = box_mean(x * x, r) - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    return box_mean(a, r) * x + box_mean(b, r)


def denoise(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    # Gaussian noise in Y, Cb and Cr, then a denoiser: two passes of a
    # self-guided (edge-preserving) filter on Y and a box mean on the chroma.
    # It leaves the typical waxy, over-smoothed texture and colour bleeding.
    ycc = to_f32(img) @ _RGB2YCC.T
    ycc += p * rng.standard_normal(img.shape, dtype=np.float32)
    np.clip(ycc, [0.0, -128.0, -128.0], [255.0, 127.0, 127.0], out=ycc)
    r = 2 if p < 20 else 3
    y = ycc[..., :1]
    y = _guided_self(y, r, (1.6 * p) ** 2)
    y = _guided_self(y, r, (0.8 * p) ** 2)
    ycc[..., :1] = y
    ycc[..., 1:] = box_mean(ycc[..., 1:], r)
    return to_u8(ycc @ _YCC2RGB.T)

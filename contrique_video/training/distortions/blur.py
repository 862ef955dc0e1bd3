"""Blur distortions: Gaussian, lens (defocus disk) and motion (line) blur."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import ImageFilter

from contrique_video.training.distortions.pixels import (
    fft_filter,
    from_pil,
    kernel_transfer,
    to_f32,
    to_pil,
    to_u8,
)


@lru_cache(maxsize=8)
def _disk_kernel(radius: float) -> np.ndarray:
    """Anti-aliased disk (area coverage by 8x8 supersampling), sums to 1."""
    r = int(np.ceil(radius))
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    c = np.arange(-r, r + 1)
    yy = (c[:, None, None, None] + sub[None, None, :, None]) ** 2
    xx = (c[None, :, None, None] + sub[None, None, None, :]) ** 2
    k = ((yy + xx) <= radius * radius).mean(axis=(2, 3))
    return (k / k.sum()).astype(np.float32)


@lru_cache(maxsize=8)
def _disk_transfer(radius: float, shape: tuple[int, int]) -> np.ndarray:
    return kernel_transfer(_disk_kernel(radius), shape)


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    """Line kernel of the given length (px) and angle (radians), bilinear splatting, sums to 1."""
    half = (length - 1) / 2.0
    r = int(np.ceil(half)) + 1
    size = 2 * r + 1
    t = np.linspace(-half, half, int(np.ceil(length * 4)) + 1)
    ys = r + t * np.sin(angle)
    xs = r + t * np.cos(angle)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    fy = ys - y0
    fx = xs - x0
    k = np.zeros((size, size), np.float64)
    np.add.at(k, (y0, x0), (1 - fy) * (1 - fx))
    np.add.at(k, (y0 + 1, x0), fy * (1 - fx))
    np.add.at(k, (y0, x0 + 1), (1 - fy) * fx)
    np.add.at(k, (y0 + 1, x0 + 1), fy * fx)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    return from_pil(to_pil(img).filter(ImageFilter.GaussianBlur(p)))


def lens_blur(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    pad = min(int(np.ceil(p)) + 1, min(img.shape[:2]) - 1)
    return to_u8(fft_filter(to_f32(img), pad, lambda shape: _disk_transfer(p, shape)))


def motion_blur(img: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0.0, np.pi)
    k = _motion_kernel(p, angle)
    pad = min(k.shape[0] // 2 + 1, min(img.shape[:2]) - 1)
    return to_u8(fft_filter(to_f32(img), pad, lambda shape: kernel_transfer(k, shape)))

"""Pixel helpers shared by the distortion families: conversions, Lab, Fourier and box filters.

Kept apart so each family module holds only its distortions; all work on HxWx3 arrays on the 0..255 scale.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from PIL import Image
from scipy import ndimage


def to_u8(x: np.ndarray) -> np.ndarray:
    """Round a float image on the 0..255 scale to uint8 (clipping)."""
    return np.clip(x + 0.5, 0.0, 255.0).astype(np.uint8)


def to_f32(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32)


def to_pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img, "RGB")


def from_pil(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB") if im.mode != "RGB" else im).copy()


# sRGB <-> CIE Lab (D65), vectorised float32 with lookup tables for the gamma curves.
_SRGB_TO_LIN = np.where(
    np.arange(256) / 255.0 <= 0.04045,
    np.arange(256) / 255.0 / 12.92,
    ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4,
).astype(np.float32)
_LIN_STEPS = 65535
_lin = np.arange(_LIN_STEPS + 1) / _LIN_STEPS
_LIN_TO_SRGB8 = np.clip(
    np.where(_lin <= 0.0031308, 12.92 * _lin, 1.055 * _lin ** (1 / 2.4) - 0.055) * 255.0 + 0.5,
    0,
    255,
).astype(np.uint8)
del _lin
_WHITE = np.array([0.95047, 1.0, 1.08883])
_RGB2XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_RGB2XYZN = (_RGB2XYZ / _WHITE[:, None]).astype(np.float32)  # white-normalised XYZ
_XYZN2RGB = np.linalg.inv(_RGB2XYZ / _WHITE[:, None]).astype(np.float32)
_D = 6.0 / 29.0
# Lab companding f(t) (cube root with a linear toe) tabulated on 0..1.05 (XYZ/white of sRGB <= 1).
_F_STEPS = 65535
_F_SCALE = np.float32(_F_STEPS / 1.05)
_tt = np.arange(_F_STEPS + 1) / _F_SCALE
_F_LUT = np.where(_tt > _D**3, np.cbrt(_tt), _tt / (3 * _D * _D) + 4.0 / 29.0).astype(np.float32)
del _tt


def rgb2lab(img: np.ndarray) -> np.ndarray:
    t = np.take(_SRGB_TO_LIN, img) @ _RGB2XYZN.T
    t *= _F_SCALE
    t += 0.5
    np.clip(t, 0, _F_STEPS, out=t)
    f = np.take(_F_LUT, t.astype(np.uint16))
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def lab2rgb(lab: np.ndarray) -> np.ndarray:
    f = np.empty_like(lab)
    f[..., 1] = (lab[..., 0] + 16.0) / 116.0
    f[..., 0] = f[..., 1] + lab[..., 1] / 500.0
    f[..., 2] = f[..., 1] - lab[..., 2] / 200.0
    # Inverse companding without branches: fc^3 + 3 D^2 (f - fc) with fc = max(f, D)
    # equals f^3 above D and the linear toe 3 D^2 (f - 4/29) below it.
    fc = np.maximum(f, np.float32(_D))
    f -= fc
    f *= np.float32(3 * _D * _D)
    f += fc * fc * fc
    lin = f @ _XYZN2RGB.T
    lin *= np.float32(_LIN_STEPS)
    lin += 0.5
    np.clip(lin, 0, _LIN_STEPS, out=lin)
    return np.take(_LIN_TO_SRGB8, lin.astype(np.uint16))


def fft_filter(x: np.ndarray, pad: int, transfer) -> np.ndarray:
    """Filter the channels of ``x`` (HxWxC float32) in the Fourier domain.

    The image is reflect-padded by ``pad`` pixels so that the circular
    convolution behaves like a reflecting border.  ``transfer(shape)`` returns
    the rfft2 of the kernel for the padded shape (kernel centred at the origin).
    """
    h, w = x.shape[:2]
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    shape = (sfft.next_fast_len(xp.shape[0], real=True), sfft.next_fast_len(xp.shape[1], real=True))
    spec = sfft.rfft2(xp, s=shape, axes=(0, 1))
    spec *= transfer(shape)[..., None]
    out = sfft.irfft2(spec, s=shape, axes=(0, 1))
    return out[pad : pad + h, pad : pad + w]


def kernel_transfer(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    kh, kw = kernel.shape
    k = np.zeros(shape, np.float32)
    k[:kh, :kw] = kernel
    k = np.roll(k, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return sfft.rfft2(k).astype(np.complex64)


@lru_cache(maxsize=8)
def _gauss_transfer(sigma: float, shape: tuple[int, int]) -> np.ndarray:
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    return np.exp(-2.0 * np.pi**2 * sigma**2 * (fy**2 + fx**2)).astype(np.float32)


def gauss_float(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the channels of a float32 HxWxC array (reflecting border)."""
    if sigma <= 3.0:
        return ndimage.gaussian_filter(x, (sigma, sigma, 0), mode="reflect", truncate=3.0)
    pad = min(int(np.ceil(3 * sigma)), min(x.shape[:2]) - 1)
    return fft_filter(x, pad, lambda shape: _gauss_transfer(float(sigma), shape))


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    return ndimage.uniform_filter(x, size=(2 * r + 1, 2 * r + 1, 1), mode="reflect")


def vmax(img: np.ndarray) -> np.ndarray:
    """HSV value: per-pixel max of R, G, B (faster than a reduction over a size-3 axis)."""
    return np.maximum(np.maximum(img[..., 0], img[..., 1]), img[..., 2])


def luma(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


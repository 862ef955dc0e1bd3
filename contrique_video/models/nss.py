"""Natural-scene-statistics features (the BRISQUE family: Mittal, Moorthy, Bovik, IEEE TIP 2012).

Distortions change the statistics of mean-subtracted, contrast-normalised (MSCN) luminance: blur makes
them peakier, noise flatter, compression skews neighbour products. 18 numbers per scale summarise that:
a generalised Gaussian fit to the MSCN coefficients (shape, variance) and asymmetric generalised Gaussian
fits (shape, mean, left and right variance) to the products of horizontal, vertical and both diagonal
neighbours. Two scales give 36 features. They complement the learned encoder, which sees far less
training data than the official CONTRIQUE model.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.special import gamma

NUM_FEATURES = 36
_SHAPES = np.arange(0.2, 10.0, 0.001)
# r(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)): a monotone function of the GGD shape, inverted by lookup.
_RATIO = gamma(2 / _SHAPES) ** 2 / (gamma(1 / _SHAPES) * gamma(3 / _SHAPES))


def mscn(luma: np.ndarray, sigma: float = 7 / 6, c: float = 1.0) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a luma image on the 0-255 scale."""
    mu = ndimage.gaussian_filter(luma, sigma, truncate=3.0)
    var = ndimage.gaussian_filter(luma * luma, sigma, truncate=3.0) - mu * mu
    return (luma - mu) / (np.sqrt(np.maximum(var, 0)) + c)


def _shape_from_ratio(ratio: float) -> float:
    return float(_SHAPES[np.argmin((_RATIO - ratio) ** 2)])


def ggd_fit(x: np.ndarray) -> tuple[float, float]:
    """Moment-matching fit of a zero-mean generalised Gaussian: (shape, variance)."""
    var = float(np.mean(x * x))
    mean_abs = float(np.mean(np.abs(x)))
    return _shape_from_ratio(mean_abs**2 / max(var, 1e-12)), var


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit: (shape, mean, left variance, right variance)."""
    left, right = x[x < 0], x[x >= 0]
    lvar = float(np.mean(left * left)) if left.size else 1e-12
    rvar = float(np.mean(right * right)) if right.size else 1e-12
    gamma_hat = np.sqrt(lvar) / max(np.sqrt(rvar), 1e-12)
    r_hat = float(np.mean(np.abs(x))) ** 2 / max(float(np.mean(x * x)), 1e-12)
    big_r = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    shape = _shape_from_ratio(big_r)
    mean = (np.sqrt(rvar) - np.sqrt(lvar)) * gamma(2 / shape) / gamma(1 / shape) * np.sqrt(gamma(1 / shape) / gamma(3 / shape))
    return shape, float(mean), lvar, rvar


def _scale_features(luma: np.ndarray) -> list[float]:
    m = mscn(luma)
    out = list(ggd_fit(m))
    pairs = (
        m[:, :-1] * m[:, 1:],  # horizontal neighbours
        m[:-1, :] * m[1:, :],  # vertical
        m[:-1, :-1] * m[1:, 1:],  # main diagonal
        m[:-1, 1:] * m[1:, :-1],  # anti-diagonal
    )
    for p in pairs:
        out.extend(aggd_fit(p.ravel()))
    return out


def nss_features(rgb: np.ndarray) -> np.ndarray:
    """36 BRISQUE-style features of an RGB frame (uint8 or uint16), at full and half scale."""
    scale = 255.0 / (255.0 if rgb.dtype == np.uint8 else 65535.0)
    luma = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) * scale
    half = np.asarray(Image.fromarray(luma).resize((luma.shape[1] // 2, luma.shape[0] // 2), Image.Resampling.BICUBIC))
    return np.array(_scale_features(luma.astype(np.float64)) + _scale_features(half.astype(np.float64)), np.float32)

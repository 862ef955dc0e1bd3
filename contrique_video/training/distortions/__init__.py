"""Synthetic distortion bank for self-supervised CONTRIQUE training.

The 25 distortion types of KADID-10k / KADIS-700k (Lin, Hosu, Saupe 2019),
re-implemented from their descriptions with numpy, scipy, Pillow and PyAV,
plus three classes produced by video encoding ladders: ``h264``, ``hevc``
(single-frame intra encodes at increasing QP) and ``rescale`` (down- then
up-scaling).  Every type has ``NUM_LEVELS`` levels: level 1 is mild, level 5
strong.  The synthetic class id of ``(type, level)`` is its index in
:func:`classes`.  The types live in family modules (``blur``, ``colour``,
``noise``, ``compression``, ``spatial``; shared pixel helpers in ``pixels``);
this package holds their level table and the one entry point.

``distort(img, kind, level, rng)`` takes an ``HxWx3`` uint8 RGB image (both
sides at least 32 pixels) and returns a new array of the same shape and dtype.
All randomness comes from ``rng``, so the same generator state gives identical
bytes.  Random draws are made in the same way for every level of a type, so
with the same seed the levels differ only in strength (same noise field, same
direction, same patch positions; higher levels move or paint more of them).

Level parameters (``PARAMS[kind][level - 1]``), with their meaning; pixel
values are on the 0..255 scale unless stated otherwise:

=======================  ==============================  =====================================
type                     levels 1..5                     meaning
=======================  ==============================  =====================================
gaussian_blur            0.6 1.1 1.8 3.0 5.0             Gaussian sigma, px
lens_blur                1 2 3 5 7                       disk (defocus) radius, px
motion_blur              3 5 8 12 18                     line length, px, random angle
color_diffusion          2 4 6 9 13                      Gaussian sigma on Lab a*, b*, px
color_shift              1 2 4 7 11                      green shift, px, random direction,
                                                         blended in at edges
color_quantization       40 20 12 7 4                    palette colours (octree) + dithering
color_saturation_hsv     0.7 0.5 0.32 0.16 0.0           factor on HSV saturation (desaturate)
color_saturation_lab     1.5 2.1 2.9 4.0 5.5             factor on Lab a*, b* (oversaturate)
jpeg2000                 24 48 96 192 384                compression ratio, 24 bpp / coded bpp
                                                         (OpenJPEG, 9/7; header bytes extra)
jpeg                     45 28 16 9 4                    JPEG quality (4:2:0)
white_noise              5 9 14 21 31                    Gaussian sigma in R, G, B
white_noise_color        6 11 17 26 38                   Gaussian sigma in YCbCr Cb and Cr
impulse_noise            0.01 0.025 0.05 0.09 0.15       salt-and-pepper density per value
multiplicative_noise     0.06 0.11 0.17 0.25 0.36        speckle sigma (relative: x*(1+s*n))
denoise                  10 18 27 38 52                  Gaussian noise sigma, then a guided
                                                         (edge-preserving) denoiser
brighten                 0.8 0.65 0.5 0.38 0.28          gamma on Lab lightness (a*, b* kept)
darken                   1.25 1.55 1.95 2.5 3.2          gamma on Lab lightness (a*, b* kept)
mean_shift               12 24 38 54 72                  added to all values, random sign
jitter                   0.5 0.9 1.5 2.4 3.6             per-pixel random offset sigma, px
non_eccentricity_patch   6 12 20 30 45                   patches (side min(H,W)/16) moved to
                                                         a nearby position
pixelate                 2 3 5 8 12                      block size, px
quantization             16 11 8 6 4                     grey levels (1-D Lloyd / multi-Otsu
                                                         thresholds, all channels pooled)
color_block              2 4 6 8 10                      random flat colour blocks
                                                         (side min(H,W)/10)
high_sharpen             60 120 200 320 500              unsharp mask amount, percent (r=2)
contrast_change          0.15 0.3 0.45 0.6 0.75          blend weight towards a contrast curve,
                                                         random direction (up: S-curve at the
                                                         image mean; down: flat image mean)
h264                     24 30 36 42 48                  libx264 QP, yuv420p, preset veryfast
hevc                     24 30 36 42 48                  libx265 QP, yuv420p, preset ultrafast
                                                         + SAO
rescale                  1.5 2 3 4 6                     downscale factor, then back up
                                                         (random bilinear/bicubic/lanczos down,
                                                         bilinear/bicubic up)
=======================  ==============================  =====================================
"""

from __future__ import annotations

import numpy as np

from contrique_video.errors import InputError
from contrique_video.training.distortions import (
    blur,
    colour,
    compression,
    noise,
    spatial,
)

NUM_LEVELS: int = 5

PARAMS: dict[str, tuple] = {
    "gaussian_blur": (0.6, 1.1, 1.8, 3.0, 5.0),
    "lens_blur": (1, 2, 3, 5, 7),
    "motion_blur": (3, 5, 8, 12, 18),
    "color_diffusion": (2, 4, 6, 9, 13),
    "color_shift": (1, 2, 4, 7, 11),
    "color_quantization": (40, 20, 12, 7, 4),
    "color_saturation_hsv": (0.7, 0.5, 0.32, 0.16, 0.0),
    "color_saturation_lab": (1.5, 2.1, 2.9, 4.0, 5.5),
    "jpeg2000": (24, 48, 96, 192, 384),
    "jpeg": (45, 28, 16, 9, 4),
    "white_noise": (5, 9, 14, 21, 31),
    "white_noise_color": (6, 11, 17, 26, 38),
    "impulse_noise": (0.01, 0.025, 0.05, 0.09, 0.15),
    "multiplicative_noise": (0.06, 0.11, 0.17, 0.25, 0.36),
    "denoise": (10, 18, 27, 38, 52),
    "brighten": (0.8, 0.65, 0.5, 0.38, 0.28),
    "darken": (1.25, 1.55, 1.95, 2.5, 3.2),
    "mean_shift": (12, 24, 38, 54, 72),
    "jitter": (0.5, 0.9, 1.5, 2.4, 3.6),
    "non_eccentricity_patch": (6, 12, 20, 30, 45),
    "pixelate": (2, 3, 5, 8, 12),
    "quantization": (16, 11, 8, 6, 4),
    "color_block": (2, 4, 6, 8, 10),
    "high_sharpen": (60, 120, 200, 320, 500),
    "contrast_change": (0.15, 0.3, 0.45, 0.6, 0.75),
    "h264": (24, 30, 36, 42, 48),
    "hevc": (24, 30, 36, 42, 48),
    "rescale": (1.5, 2.0, 3.0, 4.0, 6.0),
}

TYPES: tuple[str, ...] = tuple(PARAMS)

_MIN_SIDE = 32


def classes() -> list[tuple[str, int]]:
    """All ``(type, level)`` pairs in ``TYPES`` order, levels 1..5; the index is the class id."""
    return [(kind, level) for kind in TYPES for level in range(1, NUM_LEVELS + 1)]


# Each type's function by family module: (image, level parameter, rng) -> image.
_FUNCS = {
    "gaussian_blur": blur.gaussian_blur,
    "lens_blur": blur.lens_blur,
    "motion_blur": blur.motion_blur,
    "color_diffusion": colour.color_diffusion,
    "color_shift": colour.color_shift,
    "color_quantization": colour.color_quantization,
    "color_saturation_hsv": colour.color_saturation_hsv,
    "color_saturation_lab": colour.color_saturation_lab,
    "jpeg2000": compression.jpeg2000,
    "jpeg": compression.jpeg,
    "white_noise": noise.white_noise,
    "white_noise_color": noise.white_noise_color,
    "impulse_noise": noise.impulse_noise,
    "multiplicative_noise": noise.multiplicative_noise,
    "denoise": noise.denoise,
    "brighten": colour.brighten,
    "darken": colour.darken,
    "mean_shift": colour.mean_shift,
    "jitter": spatial.jitter,
    "non_eccentricity_patch": spatial.non_eccentricity_patch,
    "pixelate": spatial.pixelate,
    "quantization": spatial.quantization,
    "color_block": spatial.color_block,
    "high_sharpen": spatial.high_sharpen,
    "contrast_change": spatial.contrast_change,
    "h264": compression.h264,
    "hevc": compression.hevc,
    "rescale": compression.rescale,
}
assert tuple(_FUNCS) == TYPES
# The patch types draw for their top level at every level (same positions for one seed).
assert spatial.PATCH_DRAWS == max(PARAMS["non_eccentricity_patch"])
assert spatial.BLOCK_DRAWS == max(PARAMS["color_block"])


def distort(img: np.ndarray, kind: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """Apply distortion ``kind`` at ``level`` (1..5) to an HxWx3 uint8 RGB image.

    Returns a new HxWx3 uint8 array; the input is not modified.  All
    randomness is drawn from ``rng``.  Raises ``InputError`` for an unknown
    type, a level outside 1..5 or an image that is not HxWx3 uint8 with both
    sides at least 32 pixels.
    """
    fn = _FUNCS.get(kind) if isinstance(kind, str) else None
    if fn is None:
        raise InputError(f"unknown distortion type {kind!r}; expected one of: {', '.join(TYPES)}")
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 1 <= level <= NUM_LEVELS:
        raise InputError(f"distortion level must be an integer 1..{NUM_LEVELS}, got {level!r}")
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(f"distortion input must be an HxWx3 uint8 RGB array, got {img.dtype} {img.shape}")
    if min(img.shape[:2]) < _MIN_SIDE:
        raise InputError(f"distortion input must be at least {_MIN_SIDE}x{_MIN_SIDE}, got {img.shape[1]}x{img.shape[0]}")
    out = fn(np.ascontiguousarray(img), PARAMS[kind][int(level) - 1], rng)
    if out.shape != img.shape or out.dtype != np.uint8:  # pragma: no cover - internal invariant
        raise AssertionError(f"{kind} returned {out.dtype} {out.shape}")
    return out


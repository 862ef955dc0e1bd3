"""Synthetic distortion bank for self-supervised CONTRIQUE training.

The 25 distortion types of KADID-10k / KADIS-700k (Lin, Hosu, Saupe 2019),
re-implemented from their descriptions with numpy, scipy, Pillow and PyAV,
plus three classes produced by video encoding ladders: ``h264``, ``hevc``
(single-frame intra encodes at increasing QP) and ``rescale`` (down- then
up-scaling).  Every type has ``NUM_LEVELS`` levels: level 1 is mild, level 5
strong.  The synthetic class id of ``(type, level)`` is its index in
:func:`classes`.

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

import io
from fractions import Fraction
from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from PIL import Image, ImageFilter, features
from scipy import ndimage

from contrique_video.errors import InputError, UnsupportedError

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


# --------------------------------------------------------------------------- helpers


def _u8(x: np.ndarray) -> np.ndarray:
    """Round a float image on the 0..255 scale to uint8 (clipping)."""
    return np.clip(x + 0.5, 0.0, 255.0).astype(np.uint8)


def _f32(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32)


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img, "RGB")


def _np(im: Image.Image) -> np.ndarray:
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


def _rgb2lab(img: np.ndarray) -> np.ndarray:
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


def _lab2rgb(lab: np.ndarray) -> np.ndarray:
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


def _fft_filter(x: np.ndarray, pad: int, transfer) -> np.ndarray:
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


def _kernel_transfer(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
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


def _gauss_float(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of the channels of a float32 HxWxC array (reflecting border)."""
    if sigma <= 3.0:
        return ndimage.gaussian_filter(x, (sigma, sigma, 0), mode="reflect", truncate=3.0)
    pad = min(int(np.ceil(3 * sigma)), min(x.shape[:2]) - 1)
    return _fft_filter(x, pad, lambda shape: _gauss_transfer(float(sigma), shape))


def _disk_kernel(radius: float) -> np.ndarray:
    """Anti-aliased disk (area coverage by 8x8 supersampling), sums to 1."""
    r = int(np.ceil(radius))
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    c = np.arange(-r, r + 1)
    yy = (c[:, None, None, None] + sub[None, None, :, None]) ** 2
    xx = (c[None, :, None, None] + sub[None, None, None, :]) ** 2
    k = ((yy + xx) <= radius * radius).mean(axis=(2, 3))
    return (k / k.sum()).astype(np.float32)


_DISKS = {r: _disk_kernel(r) for r in PARAMS["lens_blur"]}


@lru_cache(maxsize=8)
def _disk_transfer(radius: float, shape: tuple[int, int]) -> np.ndarray:
    return _kernel_transfer(_DISKS[radius], shape)


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


def _box_mean(x: np.ndarray, r: int) -> np.ndarray:
    return ndimage.uniform_filter(x, size=(2 * r + 1, 2 * r + 1, 1), mode="reflect")


def _vmax(img: np.ndarray) -> np.ndarray:
    """HSV value: per-pixel max of R, G, B (faster than a reduction over a size-3 axis)."""
    return np.maximum(np.maximum(img[..., 0], img[..., 1]), img[..., 2])


def _luma(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


# --------------------------------------------------------------------------- blur


def _gaussian_blur(img, p, rng):
    return _np(_pil(img).filter(ImageFilter.GaussianBlur(p)))


def _lens_blur(img, p, rng):
    pad = min(int(np.ceil(p)) + 1, min(img.shape[:2]) - 1)
    return _u8(_fft_filter(_f32(img), pad, lambda shape: _disk_transfer(p, shape)))


def _motion_blur(img, p, rng):
    angle = rng.uniform(0.0, np.pi)
    k = _motion_kernel(p, angle)
    pad = min(k.shape[0] // 2 + 1, min(img.shape[:2]) - 1)
    return _u8(_fft_filter(_f32(img), pad, lambda shape: _kernel_transfer(k, shape)))


# --------------------------------------------------------------------------- colour


def _color_diffusion(img, p, rng):
    lab = _rgb2lab(img)
    lab[..., 1:] = _gauss_float(np.ascontiguousarray(lab[..., 1:]), p)
    return _lab2rgb(lab)


def _color_shift(img, p, rng):
    # Direction of the green-channel displacement (a unit vector scaled by p).
    angle = rng.uniform(0.0, 2.0 * np.pi)
    x = _f32(img)
    # Edge mask: gradient magnitude of the luma, robustly normalised to 0..1.
    gy, gx = np.gradient(_luma(x))
    gm = np.hypot(gy, gx)
    lo, hi = np.quantile(gm[::2, ::2], [0.01, 0.99])
    e = np.clip((gm - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    g_shift = _shift_bilinear(x[..., 1], p * np.sin(angle), p * np.cos(angle))
    out = x
    out[..., 1] = e * g_shift + (1.0 - e) * x[..., 1]
    return _u8(out)


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


def _color_quantization(img, p, rng):
    im = _pil(img)
    pal = im.quantize(colors=int(p), method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    return _np(im.quantize(palette=pal, dither=Image.Dither.FLOYDSTEINBERG))


def _color_saturation_hsv(img, p, rng):
    # With H and V fixed, scaling S by k maps every channel c to V - k (V - c).
    x = _f32(img)
    v = _vmax(img).astype(np.float32)[..., None]
    return _u8(v - p * (v - x))


def _color_saturation_lab(img, p, rng):
    lab = _rgb2lab(img)
    lab[..., 1:] *= p
    return _lab2rgb(lab)


# --------------------------------------------------------------------------- compression


_J2K_HEADER_BYTES = 200


def _jpeg2000(img, p, rng):
    if not features.check("jpg_2000"):
        raise UnsupportedError("jpeg2000 distortion needs Pillow built with OpenJPEG")
    h, w = img.shape[:2]
    nres = int(max(1, min(6, np.floor(np.log2(min(h, w))) - 2)))
    # p is the ratio of raw 24-bit data to coded payload; OpenJPEG's rate also
    # counts the codestream headers (~150-200 bytes), which would leave nothing
    # for small images, so the header budget is added on top.
    raw = 3.0 * h * w
    rate = raw / (raw / p + _J2K_HEADER_BYTES)
    buf = io.BytesIO()
    _pil(img).save(
        buf,
        "JPEG2000",
        quality_mode="rates",
        quality_layers=[rate],
        irreversible=True,
        num_resolutions=nres,
        no_jp2=True,
    )
    buf.seek(0)
    with Image.open(buf) as im:
        return _np(im)


def _jpeg(img, p, rng):
    buf = io.BytesIO()
    _pil(img).save(buf, "JPEG", quality=int(p), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return _np(im)


# --------------------------------------------------------------------------- noise


def _white_noise(img, p, rng):
    n = rng.standard_normal(img.shape, dtype=np.float32)
    n *= p
    n += img
    return _u8(n)


# Full-range BT.601 YCbCr (chroma centred on 0).
_RGB2YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32
)
_YCC2RGB = np.linalg.inv(_RGB2YCC).astype(np.float32)
# An offset (0, dCb, dCr) in YCbCr is this offset in RGB.
_CBCR2RGB = np.ascontiguousarray(_YCC2RGB[:, 1:].T)


def _white_noise_color(img, p, rng):
    n = rng.standard_normal(img.shape[:2] + (2,), dtype=np.float32)
    n *= p
    return _u8(_f32(img) + n @ _CBCR2RGB)


def _impulse_noise(img, p, rng):
    u = rng.random(img.shape, dtype=np.float32)
    out = img.copy()
    out[u < p / 2] = 0
    out[(u >= p / 2) & (u < p)] = 255
    return out


def _multiplicative_noise(img, p, rng):
    n = rng.standard_normal(img.shape, dtype=np.float32)
    n *= p
    n += 1.0
    n *= img
    return _u8(n)


def _guided_self(x: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Self-guided filter (He et al.) per channel: edge-preserving smoothing."""
    mean = _box_mean(x, r)
    var = _box_mean(x * x, r) - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    return _box_mean(a, r) * x + _box_mean(b, r)


def _denoise(img, p, rng):
    # Gaussian noise in Y, Cb and Cr, then a denoiser: two passes of a
    # self-guided (edge-preserving) filter on Y and a box mean on the chroma.
    # It leaves the typical waxy, over-smoothed texture and colour bleeding.
    ycc = _f32(img) @ _RGB2YCC.T
    ycc += p * rng.standard_normal(img.shape, dtype=np.float32)
    np.clip(ycc, [0.0, -128.0, -128.0], [255.0, 127.0, 127.0], out=ycc)
    r = 2 if p < 20 else 3
    y = ycc[..., :1]
    y = _guided_self(y, r, (1.6 * p) ** 2)
    y = _guided_self(y, r, (0.8 * p) ** 2)
    ycc[..., :1] = y
    ycc[..., 1:] = _box_mean(ycc[..., 1:], r)
    return _u8(ycc @ _YCC2RGB.T)


# --------------------------------------------------------------------------- brightness


def _lightness_gamma(img: np.ndarray, gamma: float) -> np.ndarray:
    # Tone curve L' = 100 (L / 100)^gamma on CIE Lab lightness; a*, b* are kept.
    lab = _rgb2lab(img)
    light = np.clip(lab[..., 0], 0.0, 100.0) * np.float32(0.01)
    lab[..., 0] = np.power(light, np.float32(gamma)) * np.float32(100.0)
    return _lab2rgb(lab)


def _brighten(img, p, rng):
    return _lightness_gamma(img, p)


def _darken(img, p, rng):
    return _lightness_gamma(img, p)


def _mean_shift(img, p, rng):
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return _u8(_f32(img) + sign * p)


# --------------------------------------------------------------------------- spatial


def _jitter(img, p, rng):
    h, w = img.shape[:2]
    off = np.rint(rng.standard_normal((2, h, w), dtype=np.float32) * p).astype(np.intp)
    yy = np.clip(np.arange(h)[:, None] + off[0], 0, h - 1)
    xx = np.clip(np.arange(w)[None, :] + off[1], 0, w - 1)
    return img[yy, xx]


def _patch_side(img: np.ndarray, frac: int) -> int:
    return max(3, int(round(min(img.shape[:2]) / frac)))


def _non_eccentricity_patch(img, p, rng):
    h, w = img.shape[:2]
    s = _patch_side(img, 16)
    nmax = max(PARAMS["non_eccentricity_patch"])
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


def _pixelate(img, p, rng):
    h, w = img.shape[:2]
    small = _pil(img).resize((max(1, -(-w // p)), max(1, -(-h // p))), Image.Resampling.BOX)
    return _np(small.resize((w, h), Image.Resampling.NEAREST))


def _quantization(img, p, rng):
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


def _color_block(img, p, rng):
    h, w = img.shape[:2]
    s = _patch_side(img, 10)
    nmax = max(PARAMS["color_block"])
    ys = rng.integers(0, h - s + 1, nmax)
    xs = rng.integers(0, w - s + 1, nmax)
    cols = rng.integers(0, 256, (nmax, 3)).astype(np.uint8)
    out = img.copy()
    for i in range(int(p)):
        out[ys[i] : ys[i] + s, xs[i] : xs[i] + s] = cols[i]
    return out


# --------------------------------------------------------------------------- sharpness, contrast


def _high_sharpen(img, p, rng):
    return _np(_pil(img).filter(ImageFilter.UnsharpMask(radius=2, percent=int(p), threshold=0)))


def _contrast_change(img, p, rng):
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


# --------------------------------------------------------------------------- video ladder


def _codec(img, codec: str, qp: int) -> np.ndarray:
    import av  # imported lazily: only the codec classes need it

    h, w = img.shape[:2]
    ph, pw = h + (h & 1), w + (w & 1)
    src = img if (ph, pw) == (h, w) else np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    prev = av.logging.get_level()
    if prev is not None and prev > av.logging.ERROR:
        av.logging.set_level(av.logging.ERROR)
    try:
        enc = av.CodecContext.create(codec, "w")
        enc.width, enc.height = pw, ph
        enc.pix_fmt = "yuv420p"
        enc.time_base = Fraction(1, 25)
        enc.thread_count = 1
        if codec == "libx264":
            enc.options = {"qp": str(qp), "preset": "veryfast", "threads": "1"}
        else:
            enc.options = {
                "preset": "ultrafast",
                "x265-params": f"qp={qp}:sao=1:log-level=none:pools=none:frame-threads=1",
            }
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(src), format="rgb24")
        packets = list(enc.encode(frame.reformat(format="yuv420p")))
        packets += list(enc.encode(None))
        dec = av.CodecContext.create("h264" if codec == "libx264" else "hevc", "r")
        dec.thread_count = 1
        frames = []
        for pkt in packets:
            frames += dec.decode(pkt)
        frames += dec.decode(None)
    finally:
        if prev is not None and prev > av.logging.ERROR:
            av.logging.set_level(prev)
    if not frames:
        raise UnsupportedError(f"{codec} produced no decodable frame")
    out = frames[0].to_ndarray(format="rgb24")
    return np.ascontiguousarray(out[:h, :w])


def _h264(img, p, rng):
    return _codec(img, "libx264", int(p))


def _hevc(img, p, rng):
    return _codec(img, "libx265", int(p))


_DOWN = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
_UP = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


def _rescale(img, p, rng):
    down = _DOWN[int(rng.integers(0, len(_DOWN)))]
    up = _UP[int(rng.integers(0, len(_UP)))]
    h, w = img.shape[:2]
    size = (max(2, int(round(w / p))), max(2, int(round(h / p))))
    return _np(_pil(img).resize(size, down).resize((w, h), up))


_FUNCS = {
    "gaussian_blur": _gaussian_blur,
    "lens_blur": _lens_blur,
    "motion_blur": _motion_blur,
    "color_diffusion": _color_diffusion,
    "color_shift": _color_shift,
    "color_quantization": _color_quantization,
    "color_saturation_hsv": _color_saturation_hsv,
    "color_saturation_lab": _color_saturation_lab,
    "jpeg2000": _jpeg2000,
    "jpeg": _jpeg,
    "white_noise": _white_noise,
    "white_noise_color": _white_noise_color,
    "impulse_noise": _impulse_noise,
    "multiplicative_noise": _multiplicative_noise,
    "denoise": _denoise,
    "brighten": _brighten,
    "darken": _darken,
    "mean_shift": _mean_shift,
    "jitter": _jitter,
    "non_eccentricity_patch": _non_eccentricity_patch,
    "pixelate": _pixelate,
    "quantization": _quantization,
    "color_block": _color_block,
    "high_sharpen": _high_sharpen,
    "contrast_change": _contrast_change,
    "h264": _h264,
    "hevc": _hevc,
    "rescale": _rescale,
}
assert tuple(_FUNCS) == TYPES


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

"""Ladders that teach a quality branch what issue 30 found its features getting wrong (``BranchConfig.grain_share``).

* :func:`grainy_encode_ladder`: a crop with ffmpeg-style uniform grain (``noise=alls=N:allf=u``, sometimes luma
  only), then one encoder's encodes of that grainy crop at ``CRFS`` (x264 ``-preset medium`` by default; x265,
  SVT-AV1 and x264 ``-tune grain`` as the degradation check's tier 3 runs them, one drawn per ladder). An
  encoder's smoothing of grain read as an improvement; here the grainy source ranks above each encode and a lower
  CRF above a higher one. With ``soft_share`` that share of the crops is made soft first (reduced 1.5-3 times
  and enlarged back), as an upscaled source is, so grain on soft content is ranked too.
* :func:`flat_noise_ladder`: a grey-level and/or smoothed (flat) copy of the crop, then one of the noise
  distortions at its 5 levels (``ffmpeg_noise`` too, when named: the degradation check's ``noise=alls=N`` at its
  strengths). Noise on flat or monochrome content read as detail; here it ranks below clean.

Both give 6 images, better to worse, like :class:`contrique_video.training.branch.LadderBatches`' ladders, and
draw every random choice from the generator they are given, so a batch stays a function of (seed, step).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from PIL import Image, ImageFilter

from contrique_video.errors import InputError
from contrique_video.training import degradation, distortions
from contrique_video.training.distortions.compression import roundtrip

CRFS = (16, 24, 32, 40, 48)  # the grainy CRF ladder
GRAIN = (6, 16)  # the grain strength N is drawn from this range, both ends included
LUMA_ONLY_SHARE = 0.3
NOISE_TYPES = ("white_noise", "white_noise_color", "impulse_noise", "multiplicative_noise")  # the default draw
FLAT_NOISE_TYPES = (*NOISE_TYPES, "ffmpeg_noise")  # what a flat-noise ladder may be asked to draw from
LUMA = np.array([0.299, 0.587, 0.114])  # BT.601, as degradation.load_pristine's NAME#gray
SOFT = (1.5, 3.0)  # a soft crop is reduced by a factor drawn from this range and enlarged back
#: PyAV encoder, its options and the decoder of its packets; the settings of :data:`contrique_video.training.grain.ENCODERS`
#: (ffmpeg CLI flags there), on one thread so an encode is a function of its input.
ENCODERS = {
    "x264": ("libx264", {"preset": "medium", "threads": "1"}, "h264"),
    "x264grain": ("libx264", {"preset": "medium", "tune": "grain", "threads": "1"}, "h264"),
    "x265": ("libx265", {"preset": "medium", "x265-params": "log-level=none:pools=1:frame-threads=1"}, "hevc"),
    "svtav1": ("libsvtav1", {"preset": "8", "svtav1-params": "lp=1"}, "libdav1d"),
}


def parse_names(value: str, choices) -> tuple[str, ...]:
    """``x264,x265`` as a tuple of names, each one of ``choices`` (:data:`ENCODERS`, :data:`FLAT_NOISE_TYPES`); an
    unknown name is one InputError line."""
    names = tuple(value.split(","))
    unknown = sorted(set(names) - set(choices))
    if unknown:
        raise InputError(f"unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
    return names


def _yuv420(rgb: np.ndarray):
    import av

    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")


def add_grain(rgb: np.ndarray, strength: int, luma_only: bool, rng: np.random.Generator):
    """The crop as a 4:2:0 PyAV frame with uniform noise as ffmpeg's ``noise`` filter makes it (``allf=u``: an
    integer in [-N/2, N - N/2) added to each sample, clipped); on the luma plane alone with ``luma_only``."""
    import av

    planes = _yuv420(rgb).to_ndarray().astype(np.int16)  # (h * 3/2) x w: Y, then U and V
    h = rgb.shape[0]
    rows = h if luma_only else planes.shape[0]
    planes[:rows] += rng.integers(0, strength, size=(rows, planes.shape[1])).astype(np.int16) - strength // 2
    return av.VideoFrame.from_ndarray(planes.clip(0, 255).astype(np.uint8), format="yuv420p")


def encode(frame, crf: int, encoder: str = "x264") -> np.ndarray:
    """One 4:2:0 frame through ``encoder`` (a key of :data:`ENCODERS`) at ``crf``, decoded to RGB."""
    import os

    import av

    codec, options, decoder = ENCODERS[encoder]
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr below level 1 (errors)
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = frame.width, frame.height, "yuv420p"
    enc.time_base = Fraction(1, 25)
    enc.thread_count = 1
    enc.options = {"crf": str(crf), **options}
    frame.pts = 0
    out = roundtrip(enc, [frame], decoder, threads=1)
    return np.ascontiguousarray(out[0].to_ndarray(format="rgb24"))


def soften(crop: np.ndarray, factor: float) -> np.ndarray:
    """The crop reduced ``factor`` times and enlarged back (bicubic), as grain.source_image's ``NAME~F``."""
    h, w = crop.shape[:2]
    small = Image.fromarray(crop).resize((max(2, round(w / factor)), max(2, round(h / factor))), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(small.resize((w, h), Image.Resampling.BICUBIC)))


def grainy_encode_ladder(crop: np.ndarray, rng: np.random.Generator, encoders: tuple[str, ...] = ("x264",),
                         soft_share: float = 0.0) -> list[np.ndarray]:
    """[the grainy crop, its encodes at CRF 16 .. 48 by one of ``encoders``]; the crop's sides must be even.

    The encoder and softness are drawn only when there is a choice, so x264-only ladders stay as they were."""
    strength = int(rng.integers(GRAIN[0], GRAIN[1] + 1))
    luma_only = bool(rng.random() < LUMA_ONLY_SHARE)
    encoder = encoders[int(rng.integers(len(encoders)))] if len(encoders) > 1 else encoders[0]
    if soft_share and rng.random() < soft_share:
        crop = soften(crop, float(rng.uniform(*SOFT)))
    grainy = add_grain(crop, strength, luma_only, rng)
    return [np.ascontiguousarray(grainy.to_ndarray(format="rgb24"))] + [encode(grainy, crf, encoder) for crf in CRFS]


def flat_copy(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop in grey levels, smoothed flat, or both (one chosen at random)."""
    how = int(rng.integers(3))  # 0 grey, 1 flat, 2 grey and flat
    out = crop
    if how != 0:
        radius = float(rng.uniform(2.0, 6.0))
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(radius)))
    if how != 1:
        luma = np.rint(out.astype(np.float64) @ LUMA).clip(0, 255).astype(np.uint8)
        out = np.repeat(luma[..., None], 3, axis=2)
    return np.ascontiguousarray(out)


def flat_noise_ladder(crop: np.ndarray, rng: np.random.Generator, types: tuple[str, ...] = NOISE_TYPES) -> list[np.ndarray]:
    """[a flat or grey copy of the crop, one noise type of ``types`` at levels 1..5 on it]."""
    base = flat_copy(crop, rng)
    kind = types[int(rng.integers(len(types)))]
    seed = int(rng.integers(2**32))
    if kind == "ffmpeg_noise":
        return [base] + [degradation.ffmpeg_noise(base, n, np.random.default_rng(seed)) for n in degradation.FFMPEG_NOISE]
    return [base] + [distortions.distort(base, kind, level, np.random.default_rng(seed))
                     for level in range(1, distortions.NUM_LEVELS + 1)]


def grain_ladder(crop: np.ndarray, rng: np.random.Generator, encoders: tuple[str, ...] = ("x264",),
                 soft_share: float = 0.0, noise_types: tuple[str, ...] = NOISE_TYPES) -> list[np.ndarray]:
    """One of the two ladders, chosen with equal odds."""
    if rng.random() < 0.5:
        return grainy_encode_ladder(crop, rng, encoders, soft_share)
    return flat_noise_ladder(crop, rng, noise_types)


__all__ = ["CRFS", "ENCODERS", "FLAT_NOISE_TYPES", "NOISE_TYPES", "add_grain", "encode", "flat_noise_ladder", "grain_ladder",
           "grainy_encode_ladder", "parse_names", "soften"]

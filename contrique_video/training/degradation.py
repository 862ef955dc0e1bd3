"""Degradation ladders of pristine images: the ranking constraints of the head fit and the degradation check.

A *ladder* is one pristine image degraded by one type at increasing strength: level 0 is the clean
source, levels 1.. are ever stronger damage, so a quality score must fall (or at least not rise) along
it. Types:

* the 28 types of :mod:`contrique_video.training.distortions` (25 KADID-style, ``h264``/``hevc`` intra QP,
  ``rescale`` down-then-up) at levels 1..5, with one random draw per (image, type) shared by all levels;
* ``ffmpeg_noise``: noise like ffmpeg's ``noise=alls=N`` (Gaussian, sigma N/sqrt(3), added to the Y,
  Cb and Cr planes independently); in clips it is drawn afresh every frame (``allf=t``, temporal);
* ``crf_libx264``, ``crf_libx265``, ``crf_libsvtav1``: one-frame encodes with PyAV at CRF 18, 24, 30,
  36, 42, 48, 51 (4:2:0), where PyAV's FFmpeg has the encoder.

Pristine images: photographs from Debian wallpaper packages and images bundled with scikit-image,
scikit-learn and matplotlib (licences in scripts/prepare_pristine.py), cut to 384x384 (antialiased
downscale so the short side is 384, centre crop). :data:`HELDOUT` is never used in fitting; the split is
by source photograph and fixed here. It is the held-out set of the encoder training as well
(``scripts/pristine_heldout.txt``: ``contrique_video.training.train.holdout_split`` of prepare_pristine.py's 46
photos, fraction 0.2, seed 0), so a head fit on a fine-tuned encoder is checked on content that neither
the encoder nor the head has seen. Scoring the ladders (the degradation check itself) is in
:mod:`contrique_video.training.degradation_check`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from contrique_video.errors import InputError, UnsupportedError
from contrique_video.training import distortions
from contrique_video.training.distortions.compression import roundtrip

SIZE = 384
CRF_LADDER = (18, 24, 30, 36, 42, 48, 51)
CODECS = ("libx264", "libx265", "libsvtav1")
# Fast presets: the ladder only needs CRF order; presets change speed, not the direction of the damage.
_PRESETS = {"libx264": ("preset", "veryfast"), "libx265": ("preset", "ultrafast"), "libsvtav1": ("preset", "10")}
_DECODERS = {"libx264": "h264", "libx265": "hevc", "libsvtav1": "libdav1d"}
FFMPEG_NOISE = (4, 8, 14, 22, 32)  # alls=N
NOISE_TYPES = ("white_noise", "white_noise_color", "impulse_noise", "multiplicative_noise", "ffmpeg_noise")

# Pristine photos: file stems in the extracted wallpaper packages (see scripts/prepare_pristine.py for the
# packages and their licences), "skimage:NAME" (skimage.data), "package:PKG/REL/PATH" (a file shipped
# inside an installed Python package).
WALLPAPERS = [
    # lomiri-wallpapers (Ubuntu wallpaper contest photos)
    "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Kleiber_by_Lukas_Baubkus", "Picture_0B_by_freespace",
    "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich",
    "friends_by_Aitzol_Berasategi", "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
    "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi",
    # mate-backgrounds nature
    "Aqua", "Blinds", "Dune", "Garden", "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower",
    # plasma-workspace-wallpapers photographs
    "BytheWater", "ColdRipple", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "OneStandsOut", "Path",
    "summer_1am",
]
SKLEARN_CHINA = "package:sklearn/datasets/images/china.jpg"
SKLEARN_FLOWER = "package:sklearn/datasets/images/flower.jpg"
#: Never used in fitting: the degradation check runs on these. The two scikit-learn photos ship with a
#: dependency, so anyone can run the check (and CI does) without the wallpaper packages.
HELDOUT = [
    SKLEARN_CHINA, SKLEARN_FLOWER,
    "Blinds", "Bridge_by_Sander_Klootwijk", "ColdRipple", "Grey", "RainDrops", "Storm", "TwoWings",
]
#: Held-out sharp-detail sources drawn here (text, line art, small objects on white: see
#: contrique_video.training.sharp.generated); the grain head's fit uses other seeds of the same drawings.
HELDOUT_SHARP = ["gen:text/100", "gen:product/100", "gen:lineart/100"]
#: Sources of the ranking constraints, in the order their features are computed (varied content first,
#: so a run cut short still covers it).
FIT = [
    "Dragonfly_by_Bolly", "Aqua", "skimage:astronaut", "Dune", "picosdeeuropa_by_Aitzol_Berasategi", "LadyBird",
    "Wine_by_Jakkub_Mede", "Garden", "skimage:coffee", "Kleiber_by_Lukas_Baubkus", "EveningGlow",
    "friends_by_Aitzol_Berasategi", "Wood", "skimage:chelsea", "Path", "sunset_by_Aitzol_Berasategi",
    "YellowFlower", "package:matplotlib/mpl-data/sample_data/grace_hopper.jpg", "BytheWater", "DarkestHour",
    "Picture_0B_by_freespace", "FallenLeaf", "skimage:rocket", "life_by_Aitzol_Berasategi", "OneStandsOut",
    "seeding_by_Clements_Engelhardt", "free_by_Peter_Nerlich", "aitzgorri_by_Aitzol_Berasategi", "summer_1am",
    "Picture_1A_by_freespace",
]
#: Extra ranking sources: the least detailed square of a fit photo at twice the scale (see load_pristine).
FIT_SMOOTH = [f"{n}#smooth" for n in FIT if ":" not in n][:10]
assert not set(FIT) & set(HELDOUT)


def crop_square(rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Antialiased downscale so the short side is ``size`` (never upscaled), then a centre crop (at most size)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgb))
    scale = size / min(im.size)
    if scale < 1:
        im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.Resampling.LANCZOS)
    w, h = im.size
    s = min(size, w, h)
    s -= s % 2  # 4:2:0 encodes need even sides
    left, top = (w - s) // 2, (h - s) // 2
    return np.asarray(im.crop((left, top, left + s, top + s)).convert("RGB"))


def skimage_image(name: str) -> np.ndarray:
    from skimage import data as skdata

    fn = getattr(skdata, name, None)
    if fn is None:
        raise InputError(f"scikit-image has no data image {name!r}")
    arr = np.asarray(fn())
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3].astype(np.uint8))


def package_path(spec: str) -> Path:
    """A file shipped inside an installed Python package, ``PACKAGE/relative/path``: photos come only from
    packages installed by name, so a missing one is named with how to install it."""
    import importlib.util

    package, _, rel = spec.partition("/")
    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        raise InputError(f"Python package {package} is not installed (pip install {package}; needed for {spec})")
    path = Path(found.origin).parent / rel
    if not path.is_file():
        raise InputError(f"{path} is missing from the installed {package}")
    return path


def package_image(spec: str) -> np.ndarray:
    """An image file shipped inside an installed Python package, as RGB."""
    from PIL import Image

    with Image.open(package_path(spec)) as im:
        return np.asarray(im.convert("RGB"))


def find_wallpaper(root: Path, name: str) -> Path:
    """The largest file of a photo in extracted wallpaper packages (plasma keeps sizes under NAME/contents/images/)."""
    hits = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")
            and (p.stem == name or f"/{name}/contents/images/" in p.as_posix())]
    if not hits:
        raise InputError(f"photo {name} not found under {root}: extract the wallpaper packages there first "
                         "(see scripts/prepare_pristine.py)")
    return max(hits, key=lambda p: p.stat().st_size)


def smoothest_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` square with the least detail (Laplacian variance of luma) on a 3 x 3 grid of positions."""
    from scipy import ndimage

    h, w = rgb.shape[:2]
    best, out = None, None
    for top in np.linspace(0, h - size, 3).astype(int):
        for left in np.linspace(0, w - size, 3).astype(int):
            win = rgb[top : top + size, left : left + size]
            detail = float(ndimage.laplace(win.astype(np.float32).mean(axis=2)).var())
            if best is None or detail < best:
                best, out = detail, win
    return np.ascontiguousarray(out)


def load_pristine(name: str, wallpapers: Path | None = None, size: int = SIZE) -> np.ndarray:
    """A pristine source as a size x size uint8 RGB array.

    ``NAME#smooth`` is the photo at twice the scale (short side 2 x size) cut to its least detailed
    square: flat skies, walls and water, where noise is most visible and a head most easily reads it as detail.
    ``NAME#gray`` is the photo in grey levels (BT.601 luma), so colour noise on it is pure damage.
    """
    if name.endswith("#gray"):  # monochrome photos, where colour noise adds colour a head may read as vivid
        rgb = load_pristine(name[: -len("#gray")], wallpapers, size).astype(np.float64)
        luma = np.rint(rgb @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)
        return np.repeat(luma[..., None], 3, axis=2)
    if name.endswith("#smooth"):
        big = load_pristine(name[: -len("#smooth")], wallpapers, 2 * size)
        return smoothest_crop(big, size)
    if name.startswith("gen:"):  # a sharp-detail image drawn by contrique_video.training.sharp
        from contrique_video.training.sharp import generated

        kind, _, seed = name[4:].partition("/")
        return generated(kind, int(seed or 0), size, size)
    if name.startswith("skimage:"):
        return crop_square(skimage_image(name.split(":", 1)[1]), size)
    if name.startswith("package:"):
        return crop_square(package_image(name.split(":", 1)[1]), size)
    if wallpapers is None:
        raise InputError(f"{name} is a wallpaper photo: pass the folder of the extracted wallpaper packages")
    from PIL import Image

    with Image.open(find_wallpaper(Path(wallpapers), name)) as im:
        return crop_square(np.asarray(im.convert("RGB")), size)


# ---------------------------------------------------------------------------------- extra degradations


_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC_INV = np.linalg.inv(_YCC)


def ffmpeg_noise(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Noise like ffmpeg's ``noise=alls=N``: Gaussian (sigma N/sqrt(3)) on Y, Cb and Cr independently."""
    ycc = rgb.astype(np.float32) @ _YCC.T.astype(np.float32)
    ycc += rng.standard_normal(ycc.shape, dtype=np.float32) * np.float32(strength / np.sqrt(3.0))
    out = ycc @ _YCC_INV.T.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def available_codecs() -> list[str]:
    import av

    have = set(av.codecs_available)
    return [c for c in CODECS if c in have and _DECODERS[c] in have]


def crf_encode(frames: list[np.ndarray], codec: str, crf: int) -> list[np.ndarray]:
    """Encode RGB frames (same size, even sides) with ``codec`` at ``crf`` in memory; the decoded frames."""
    import av

    from contrique_video.encoding.encode import ENCODERS

    if codec not in ENCODERS or codec not in _PRESETS:
        raise UnsupportedError(f"unknown CRF codec {codec!r}; known: {', '.join(CODECS)}")
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise InputError(f"CRF encodes need even sides, got {w}x{h}")
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr unless told not to
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, 25)
    enc.framerate = Fraction(25, 1)
    key, value = _PRESETS[codec]
    opts = {"crf": str(crf), key: value, **ENCODERS[codec].options}
    if codec == "libx265":
        opts["x265-params"] = "log-level=none:pools=none:frame-threads=1"
    elif codec == "libx264":
        opts["threads"] = "1"
    enc.options = opts
    yuv = []
    for i, f in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        yuv.append(vf)
    out = roundtrip(enc, yuv, _DECODERS[codec])
    if len(out) != len(frames):
        raise UnsupportedError(f"{codec} at CRF {crf} gave {len(out)} frames for {len(frames)}")
    return [np.ascontiguousarray(f.to_ndarray(format="rgb24")[:h, :w]) for f in out]


# ---------------------------------------------------------------------------------- ladders


@dataclass(frozen=True)
class Ladder:
    """One degradation type on one source: ``levels[0]`` is clean, then ever stronger damage."""

    kind: str
    labels: tuple  # the parameter of each level (0 = clean), for reports
    make: Callable[[int], np.ndarray]  # level index -> image (0 -> the clean source)

    @property
    def n(self) -> int:
        return len(self.labels)


def _seed(*parts) -> int:
    import zlib

    return zlib.crc32("/".join(map(str, parts)).encode())


#: Types that can improve an already imperfect photo (a dark, flat, dull, soft or noisy one), so ranking
#: sources cut from authentic images (CLIVE) leave them out: only damage that harms any photo is a pair.
CAN_IMPROVE = ("brighten", "darken", "mean_shift", "contrast_change", "high_sharpen", "denoise", "color_saturation_lab")


def ladder_kinds(authentic: bool = False) -> list[str]:
    """The ladder types available here: the bank's 28, ffmpeg-like noise, CRF per codec (``authentic``:
    without :data:`CAN_IMPROVE`)."""
    kinds = list(distortions.TYPES) + ["ffmpeg_noise"] + [f"crf_{c}" for c in available_codecs()]
    return [k for k in kinds if not (authentic and k in CAN_IMPROVE)]


def ladders(src: np.ndarray, source_name: str, kinds: list[str] | None = None) -> list[Ladder]:
    """Every ladder of ``src``: the distortion bank's 28 types, ffmpeg-like noise, CRF ladders per codec."""
    all_kinds = ladder_kinds()
    kinds = all_kinds if kinds is None else kinds
    unknown = [k for k in kinds if k not in all_kinds]
    if unknown:
        raise InputError(f"unknown degradation type {unknown[0]!r}; known here: {', '.join(all_kinds)}")
    out = []
    for kind in kinds:
        seed = _seed(source_name, kind)
        if kind in distortions.TYPES:
            def make(level, kind=kind, seed=seed):
                if level == 0:
                    return src
                return distortions.distort(src, kind, level, np.random.default_rng(seed))

            out.append(Ladder(kind, (0, *distortions.PARAMS[kind]), make))
        elif kind == "ffmpeg_noise":
            def make(level, seed=seed):
                if level == 0:
                    return src
                return ffmpeg_noise(src, FFMPEG_NOISE[level - 1], np.random.default_rng(seed))

            out.append(Ladder(kind, (0, *FFMPEG_NOISE), make))
        else:
            codec = kind[4:]

            def make(level, codec=codec):
                if level == 0:
                    return src
                return crf_encode([src], codec, CRF_LADDER[level - 1])[0]

            out.append(Ladder(kind, ("clean", *CRF_LADDER), make))
    return out


def ladder_pairs(n_levels: int) -> list[tuple[int, int]]:
    """(better, worse) level pairs of one ladder: each level below the previous one and below clean."""
    pairs = [(k, k + 1) for k in range(n_levels - 1)]
    pairs += [(0, k) for k in range(2, n_levels)]
    return pairs


# ---------------------------------------------------------------------------------- clips


def pan_clip(src: np.ndarray, frames: int = 12, size: int = 256, step: int = 4) -> list[np.ndarray]:
    """A short clip from a still: a ``size`` square window panning diagonally by ``step`` px a frame."""
    h, w = src.shape[:2]
    span = (frames - 1) * step
    if min(h, w) < size + span:
        raise InputError(f"source {w}x{h} is too small for a {frames}-frame {size}px pan")
    return [np.ascontiguousarray(src[i * step : i * step + size, i * step : i * step + size]) for i in range(frames)]


def clip_ladders(frames: list[np.ndarray], source_name: str) -> list[Ladder]:
    """Ladders of a clip (each level is a list of frames): CRF per available codec, temporal ffmpeg noise."""
    out = []
    for codec in available_codecs():
        def make(level, codec=codec):
            return frames if level == 0 else crf_encode(frames, codec, CRF_LADDER[level - 1])

        out.append(Ladder(f"crf_{codec}", ("clean", *CRF_LADDER), make))
    seed = _seed(source_name, "clip_noise")

    def noisy(level):
        if level == 0:
            return frames
        rng = np.random.default_rng(seed)  # same draws at every level; a fresh field every frame (allf=t)
        return [ffmpeg_noise(f, FFMPEG_NOISE[level - 1], rng) for f in frames]

    out.append(Ladder("ffmpeg_noise_temporal", (0, *FFMPEG_NOISE), noisy))
    return out

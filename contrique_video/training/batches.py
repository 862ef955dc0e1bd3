"""Training data: image folders, the official recipe's colour views, and batches that are pure functions of
(seed, batch index), so a resumed run continues the same sequence."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from skimage import color

from contrique_video.errors import InputError
from contrique_video.training import distortions

if TYPE_CHECKING:
    from contrique_video.training.train import TrainConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(folder: str | Path, min_size: int = 0) -> list[Path]:
    """The images under ``folder``, sorted; with ``min_size``, any smaller or damaged image is refused now, not
    hours into a run."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"no images (.png .jpg .bmp .webp .tif) in {folder}")
    if min_size:
        small = []
        for p in files:
            try:
                with Image.open(p) as im:
                    im.load()  # a truncated file fails here, not later in a data worker
                    if min(im.size) < min_size:
                        small.append(p.name)
            except OSError as exc:
                raise InputError(f"cannot read image {p}: {exc}") from None
        if small:
            raise InputError(f"{len(small)} images in {folder} are smaller than {min_size}px, e.g. {small[0]}")
    return files


def load_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (grey and RGBA images converted); a damaged file is named in one line."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None

COLOUR_OPTIONS = ("none", "gray", "lab", "hsv", "lms")


def colour_view(rgb: np.ndarray, option: str) -> np.ndarray:
    """One of the official recipe's colour options, as float32 HxWx3 roughly in [0, 1]."""
    x = rgb.astype(np.float32) / 255.0
    if option == "gray":
        return np.repeat((x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=2)
    if option == "lab":
        lab = color.rgb2lab(x).astype(np.float32)
        return np.stack([lab[..., 0] / 100.0, (lab[..., 1] + 128) / 255.0, (lab[..., 2] + 128) / 255.0], axis=-1)
    if option == "hsv":
        return color.rgb2hsv(x).astype(np.float32)
    if option == "lms":  # local mean subtracted, re-centred at 0.5
        return x - ndimage.gaussian_filter(x, sigma=(7 / 6, 7 / 6, 0)) + 0.5
    return x


class BatchMaker(torch.utils.data.Dataset):
    """Batch ``k`` is built from ``default_rng([seed, k])`` alone: resumable and identical across runs."""

    def __init__(self, cfg: TrainConfig, pristine: list[Path], authentic: list[Path]):
        self.cfg = cfg
        self.pristine = pristine
        self.authentic = authentic if cfg.objective != "classify" else []
        self.classes = [c for c in distortions.classes() if c[0] in cfg.types]
        self._cache: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return self.cfg.steps

    @property
    def num_synthetic_classes(self) -> int:
        return len(self.classes) + 1  # + pristine

    def _image(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = load_rgb(path)
        return self._cache[path]

    def _region(self, img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        """A random square of ``size`` px, from a random (downscaling) scale of the image: more content per photo."""
        h, w = img.shape[:2]
        lo = min(size, h, w)  # never upscale: that would blur the "pristine" content
        side = int(rng.integers(lo, min(h, w) + 1))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = img[y : y + side, x : x + side]
        if side != size:
            crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS))
        return crop

    def _views(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(full-scale crop, half-scale crop) of an image of at least 2*crop px on each side."""
        c = self.cfg.crop
        h, w = img.shape[:2]
        y, x = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
        full = img[y : y + c, x : x + c]
        small = np.asarray(Image.fromarray(img).resize((w // 2, h // 2), Image.Resampling.BICUBIC))
        y, x = rng.integers(0, h // 2 - c + 1), rng.integers(0, w // 2 - c + 1)
        return full, small[y : y + c, x : x + c]

    def _finish(self, view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        option = COLOUR_OPTIONS[rng.integers(len(COLOUR_OPTIONS))] if self.cfg.objective != "classify" else "none"
        out = colour_view(view, option)
        if rng.random() < 0.5:
            out = out[:, ::-1]
        return np.ascontiguousarray(out.transpose(2, 0, 1))

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (full views, half views, labels); labels < num_synthetic_classes are synthetic."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, k])
        fulls, halves, labels = [], [], []
        # Synthetic: classes drawn in pairs so that every class in the batch has a positive of other content.
        # Each distorted region gives ``crops_per_image`` view pairs: distortion dominates the data cost.
        k = cfg.crops_per_image
        n_pairs = max(1, cfg.batch // (2 * k))
        picks = rng.integers(0, self.num_synthetic_classes, size=n_pairs).repeat(2)
        for label in picks:
            region = self._region(self._image(self.pristine[rng.integers(len(self.pristine))]), 2 * cfg.crop, rng)
            if label > 0:
                kind, level = self.classes[label - 1]
                region = distortions.distort(region, kind, level, rng)
            for _ in range(k):
                full, half = self._views(region, rng)
                fulls.append(self._finish(full, rng))
                halves.append(self._finish(half, rng))
                labels.append(int(label))
        if self.authentic:
            for i in rng.choice(len(self.authentic), size=min(cfg.authentic_batch, len(self.authentic)), replace=False):
                img = self._image(self.authentic[i])
                if min(img.shape[:2]) < 2 * cfg.crop:
                    img = self._region(img, 2 * cfg.crop, rng)
                full, half = self._views(img, rng)
                fulls.append(self._finish(full, rng))
                halves.append(self._finish(half, rng))
                labels.append(self.num_synthetic_classes + int(i))
        return torch.from_numpy(np.stack(fulls)), torch.from_numpy(np.stack(halves)), torch.tensor(labels)

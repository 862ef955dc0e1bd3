"""Frame preprocessing, part of a model card (as torchvision keeps weights and transforms together).

The official CONTRIQUE inference input: the frame as float32 in [0, 1] at native size (no crop) and a half-size
copy made with PIL's default ``resize`` (bicubic, antialiased) on the 8-bit image. A normalisation beyond [0, 1]
(EfficientNet-Lite's ``(255 x - 127) / 128``) stays inside the network, so ONNX exports and TensorRT engines
carry it and every backend feeds the same input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from contrique_video.errors import InputError


def half_scale(rgb: np.ndarray) -> np.ndarray:
    """Half-size copy exactly as the official code makes it: ``PIL.Image.resize((W // 2, H // 2))``.

    8-bit frames go through PIL's RGB bicubic resampler; >8-bit frames (uint16) are resized per channel in
    PIL's float mode with the same filter so their precision survives.
    """
    h, w = rgb.shape[:2]
    size = (w // 2, h // 2)
    if rgb.dtype == np.uint8:
        return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))
    planes = [
        np.asarray(Image.fromarray(rgb[..., c].astype(np.float32)).resize(size, Image.Resampling.BICUBIC))
        for c in range(3)
    ]
    return np.clip(np.stack(planes, axis=-1), 0, 65535)


def to_array(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 (0..255) or uint16/float (0..65535) -> 3xHxW float32 in [0, 1]."""
    scale = np.float32(255.0 if rgb.dtype == np.uint8 else 65535.0)
    return np.divide(rgb.transpose(2, 0, 1), scale, dtype=np.float32)


@dataclass(frozen=True)
class TwoScale:
    """The network inputs for one RGB frame: full scale, then half scale (features are ``[full | half]``)."""

    min_side: int = 64  # the half scale of a smaller frame leaves too little for the encoder's strides
    scales = 2  # what __call__ returns; backends size their output by it

    def check(self, rgb: np.ndarray) -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputError(f"expected an HxWx3 RGB frame, got shape {rgb.shape}")
        if min(rgb.shape[:2]) < self.min_side:
            raise InputError(f"frame {rgb.shape[1]}x{rgb.shape[0]} is too small to score "
                             f"(needs at least {self.min_side}x{self.min_side})")

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(full, half): 3xHxW float32 arrays in [0, 1]."""
        return to_array(rgb), to_array(half_scale(rgb))


__all__ = ["TwoScale", "half_scale", "to_array"]

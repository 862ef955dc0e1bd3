"""Encoder backends: RGB frames in, CONTRIQUE features out (``[full-scale | half-scale]``).

The preprocessing is the official inference path: the frame as float32 in [0, 1] (no normalisation, no
crop, native size) and a half-scale copy made with PIL's default ``resize`` (bicubic, antialiased) on the
8-bit image. Each scale is global-average-pooled and L2-normalised by ``Contrique.forward``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .errors import InputError, UnsupportedError
from .model import Contrique


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


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 (0..255) or uint16/float (0..65535) -> 1x3xHxW float32 in [0, 1]."""
    scale = 255.0 if rgb.dtype == np.uint8 else 65535.0
    return torch.from_numpy(rgb.astype(np.float32)).div_(scale).permute(2, 0, 1).unsqueeze(0)


def check_frame(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"expected an HxWx3 RGB frame, got shape {rgb.shape}")
    if min(rgb.shape[:2]) < 64:
        raise InputError(f"frame {rgb.shape[1]}x{rgb.shape[0]} is too small to score (needs at least 64x64)")


class TorchBackend:
    """Eager PyTorch: the reference path, on CPU or CUDA."""

    name = "torch"

    def __init__(self, model: Contrique, device: str = "cpu", precision: str = "fp32"):
        if precision not in ("fp32", "bf16", "fp16"):
            raise UnsupportedError(f"torch backend supports precision fp32, bf16, fp16, not {precision!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UnsupportedError("--device cuda was requested but PyTorch sees no CUDA GPU")
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.eval().to(self.device)
        self.feature_dim = 2 * model.feature_dim

    @torch.inference_mode()
    def _encode(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        if self.precision == "fp32":
            return self.model(batch)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype):
            return self.model(batch)

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Features for a batch of frames; frames of equal size run as one batch."""
        out = np.empty((len(frames), self.feature_dim), dtype=np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, rgb in enumerate(frames):
            check_frame(rgb)
            groups.setdefault(rgb.shape, []).append(i)
        half = self.feature_dim // 2
        for idx in groups.values():
            full = torch.cat([to_tensor(frames[i]) for i in idx])
            small = torch.cat([to_tensor(half_scale(frames[i])) for i in idx])
            out[idx, :half] = self._encode(full).float().cpu().numpy()
            out[idx, half:] = self._encode(small).float().cpu().numpy()
        return out

"""Encoder backends: RGB frames in, features out (``[full-scale | half-scale]``), for any encoder family.

The preprocessing is the official inference path: the frame as float32 in [0, 1] (no crop, native size) and
a half-scale copy made with PIL's default ``resize`` (bicubic, antialiased) on the 8-bit image. The model
module pools each scale: ``Contrique.forward`` (GAP, L2 norm) or a Lite layout (``models/layouts.py``), which
also applies its own input normalisation inside the graph.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from contrique_video.errors import InputError, UnsupportedError

if TYPE_CHECKING:  # torch loads on first use, so `contrique-video --help` stays fast
    import torch

    from contrique_video.models.contrique import Contrique

log = logging.getLogger("contrique_video")


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


def check_frame(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"expected an HxWx3 RGB frame, got shape {rgb.shape}")
    if min(rgb.shape[:2]) < 64:
        raise InputError(f"frame {rgb.shape[1]}x{rgb.shape[0]} is too small to score (needs at least 64x64)")


class Backend:
    """What every backend shares: checks, the two scales, batching by frame size.

    Subclasses implement :meth:`run` on one Nx3xHxW float32 batch in [0, 1] and return Nx``scale_dim``
    float32 features (pooled and L2-normalised, as ``Contrique.forward``).
    """

    name = "?"
    precision = "fp32"
    max_batch: int | None = None  # None: any batch size; compiled and engine paths run fixed-shape batches

    def __init__(self, scale_dim: int):
        self.scale_dim = scale_dim
        self.feature_dim = 2 * scale_dim

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} {self.precision}"

    def _run_all(self, batch: np.ndarray) -> np.ndarray:
        step = self.max_batch or len(batch)
        return np.concatenate([self.run(batch[i : i + step]) for i in range(0, len(batch), step)])

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Features for a batch of frames, ``[full-scale | half-scale]``; frames of equal size run together."""
        out = np.empty((len(frames), self.feature_dim), dtype=np.float32)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, rgb in enumerate(frames):
            check_frame(rgb)
            groups.setdefault(rgb.shape, []).append(i)
        for idx in groups.values():
            out[idx, : self.scale_dim] = self._run_all(np.stack([to_array(frames[i]) for i in idx]))
            out[idx, self.scale_dim :] = self._run_all(np.stack([to_array(half_scale(frames[i])) for i in idx]))
        return out


class TorchBackend(Backend):
    """PyTorch, eager or compiled with ``torch.compile``; channels_last unless asked for the official NCHW layout.

    Compiling costs a minute or more per input shape (full and half scale, per resolution) the first time;
    Inductor's on-disk cache makes later processes start faster. Compiled runs go one frame at a time so
    that a short last batch does not trigger another compile.
    """

    name = "torch"

    def __init__(self, model: Contrique | torch.nn.Module, device: str = "cpu", precision: str = "fp32", compile: bool = False,
                 channels_last: bool = True):
        import torch

        super().__init__(model.feature_dim)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UnsupportedError("--device cuda was requested but PyTorch sees no CUDA GPU")
        self.device = torch.device(device)
        supported = torch_precisions(self.device.type)
        if precision not in supported:
            raise UnsupportedError(
                f"the torch backend on {self.device.type} supports precision {', '.join(supported)}, not {precision}"
            )
        self.precision = precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        self.compiled = compile
        if compile:
            import torch._inductor.config as inductor

            inductor.freezing = True  # fold the frozen weights into the compiled graph
            self.forward = torch.compile(self.model)
            self.max_batch = 1
        else:
            self.forward = self.model

    def describe(self) -> str:
        import torch

        layout = "" if self.memory_format is torch.channels_last else " NCHW"
        return f"torch {'compiled' if self.compiled else 'eager'}{layout} {self.precision} on {self.device.type}"

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(batch).to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return self.forward(x).float().cpu().numpy()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux), to tell native bf16 and int8 dot-product instructions from emulation."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16() -> bool:
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def torch_precisions(device_type: str) -> tuple[str, ...]:
    """Precisions worth running: bf16 only where the CPU has bf16 instructions (emulated, it measured ~5x
    slower than fp32 here); fp16 only on CUDA."""
    if device_type == "cuda":
        return ("fp32", "fp16", "bf16")
    return ("fp32", "bf16") if cpu_has_bf16() else ("fp32",)


BACKENDS = ("auto", "torch", "torch-compile", "onnxruntime", "tensorrt")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def auto_choice(device: str, weights: str | os.PathLike | None = None, threads: int | None = None) -> tuple[str, str]:
    """What ``--backend auto`` runs: the fastest path whose scores stay inside the accuracy bounds.

    CUDA: a TensorRT fp16 engine when TensorRT is installed, else PyTorch fp16. CPU with ``weights``: the
    per-machine, per-model choice of :func:`contrique_video.backends.autotune.choose` (measured once, cached). CPU
    without weights (nothing to measure): ONNX Runtime fp32 when installed, else eager PyTorch fp32.
    """
    import importlib.util

    if device.startswith("cuda"):
        return ("tensorrt", "fp16") if importlib.util.find_spec("tensorrt") else ("torch", "fp16")
    if weights is not None:
        from contrique_video.backends.autotune import choose

        choice = choose(weights, threads)
        log.info("%s", choice.line())
        return choice.backend, choice.precision
    return ("onnxruntime", "fp32") if importlib.util.find_spec("onnxruntime") else ("torch", "fp32")


def open_backend(weights: str | os.PathLike, backend: str = "auto", precision: str = "auto", device: str = "cpu",
                 threads: int | None = None) -> Backend:
    """The encoder for a checkpoint (``.pt``/``.tar``), a model card (``.json``) or an ONNX export (``.onnx``).

    ONNX files the backends need are exported from the checkpoint once and kept in :func:`cache_dir`.
    """
    if backend not in BACKENDS:
        raise UnsupportedError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UnsupportedError(f"unknown precision {precision!r}; available: {', '.join(PRECISIONS)}")
    weights = Path(weights)
    is_onnx = weights.suffix.lower() == ".onnx"
    if backend == "auto":
        measured = not is_onnx and precision == "auto" and not device.startswith("cuda")
        if is_onnx:
            backend = "onnxruntime"  # an ONNX file runs at the precision it was exported at
        elif measured:
            backend, precision = auto_choice(device, weights, threads)  # measured per machine; logs why
        else:
            backend, auto_precision = auto_choice(device)
            if precision == "auto":
                precision = auto_precision
            elif precision == "bf16" and not device.startswith("cuda"):
                backend = "torch"  # the CPU bf16 path
        if not measured:
            log.info("backend auto: %s %s on %s", backend, precision, device)
    if is_onnx and backend not in ("onnxruntime", "tensorrt"):
        raise UnsupportedError(f"{weights.name} is an ONNX file: use --backend onnxruntime or tensorrt")
    if backend in ("torch", "torch-compile"):
        from contrique_video.models.card import load_model

        return TorchBackend(load_model(weights), device=device, precision="fp32" if precision == "auto" else precision,
                            compile=backend == "torch-compile")
    from contrique_video.backends import onnx as onnx_backend

    if backend == "onnxruntime":
        return onnx_backend.open_onnxruntime(weights, precision, device, threads)
    from contrique_video.backends.tensorrt import (
        TensorRTBackend,
        import_tensorrt,
        require_cuda,
    )

    require_cuda(device)  # fail in a moment, not after an export
    import_tensorrt()
    onnx_file = weights if is_onnx else onnx_backend.cached_export(weights, "fp32")
    return TensorRTBackend(onnx_file, device=device, precision="fp16" if precision == "auto" else precision)

"""PyTorch backends: eager (``torch``) and ``torch.compile`` (``torch-compile``), on CPU or CUDA."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from contrique_video.backends.base import Backend
from contrique_video.backends.registry import BackendChoice, register_backend
from contrique_video.errors import UnsupportedError
from contrique_video.models.transforms import TwoScale

if TYPE_CHECKING:  # torch loads on first use, so `contrique-video --help` stays fast
    import torch

    from contrique_video.models import ResolvedModel

#: Precisions per device type; bf16 on a CPU only where it has bf16 instructions (registry.needs_native).
TORCH_PRECISIONS = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")}


class TorchBackend(Backend):
    """PyTorch, eager or compiled with ``torch.compile``; channels_last unless asked for the official NCHW layout.

    Compiling costs a minute or more per input shape (full and half scale, per resolution) the first time;
    Inductor's on-disk cache makes later processes start faster. Compiled runs go one frame at a time so
    that a short last batch does not trigger another compile.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", precision: str = "fp32", compile: bool = False,
                 channels_last: bool = True, preprocess: TwoScale | None = None):
        import torch

        super().__init__(model.feature_dim, preprocess)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UnsupportedError("--device cuda was requested but PyTorch sees no CUDA GPU")
        self.device = torch.device(device)
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


def set_torch_threads(threads: int | None) -> None:
    """``--threads`` for torch, set here rather than by every caller, so paths without torch never import it."""
    if threads:
        import torch

        torch.set_num_threads(threads)


@register_backend("torch", requires="torch", precisions=TORCH_PRECISIONS, needs_native=("bf16",))
def open_eager(model: ResolvedModel, choice: BackendChoice) -> TorchBackend:
    set_torch_threads(choice.threads)
    return TorchBackend(model.load(), choice.device, choice.precision, preprocess=model.preprocess)


@register_backend("torch-compile", requires="torch", precisions=TORCH_PRECISIONS, needs_native=("bf16",), auto=False)
def open_compiled(model: ResolvedModel, choice: BackendChoice) -> TorchBackend:
    set_torch_threads(choice.threads)
    return TorchBackend(model.load(), choice.device, choice.precision, compile=True, preprocess=model.preprocess)


__all__ = ["TORCH_PRECISIONS", "TorchBackend", "open_compiled", "open_eager"]

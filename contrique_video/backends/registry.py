"""The backend registry: a name (``--backend``) to the function that opens it and the precisions it offers.

Each backend module registers its opener with :func:`register_backend`; ``backends/__init__.py`` imports the
modules, and the CLI's ``--backend`` choices, ``info`` and ``bench`` read :data:`REGISTRY`. Backend modules
import their runtime (torch, onnxruntime, TensorRT) inside functions, so registering costs nothing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contrique_video.backends.cpu import native

if TYPE_CHECKING:
    from contrique_video.backends.base import Backend
    from contrique_video.models.resolved import ResolvedModel


@dataclass(frozen=True)
class BackendChoice:
    """How to run a model's encoder: ``backend`` (a registered name or ``"auto"``), ``precision`` (or ``"auto"``),
    ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``), CPU ``threads`` (None: the runtime's default) and ``head``, the
    name of the head scores are read with (None: the model's default), since auto runs a reduced precision only
    where the card measured it with that head."""

    backend: str = "auto"
    precision: str = "auto"
    device: str = "cpu"
    threads: int | None = None
    head: str | None = None

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


#: ``opener(model, choice)``: the resolved model and a choice whose backend and precision are resolved (never
#: "auto"), except for an ``.onnx`` file, which runs at the precision it was exported at unless one is asked for.
Opener = Callable[["ResolvedModel", BackendChoice], "Backend"]


@dataclass(frozen=True)
class BackendSpec:
    name: str
    opener: Opener
    requires: str  # the package that must be installed
    precisions: dict[str, tuple[str, ...]]  # device type ("cpu", "cuda") -> precisions offered, the default first
    onnx_files: bool = False  # runs an .onnx export as given
    auto: bool = True  # timed by auto on a CPU (torch.compile's first compile per frame size is too slow to weigh)
    needs_native: tuple[str, ...] = ()  # offered on a CPU only where it runs them natively (cpu.NATIVE)

    def installed(self) -> bool:
        return importlib.util.find_spec(self.requires) is not None

    def offered(self, device: str) -> tuple[str, ...]:
        """Precisions worth running on ``device`` (emulated bf16 measured ~5x slower than fp32 on a CPU)."""
        kind = "cuda" if device.startswith("cuda") else "cpu"
        return tuple(p for p in self.precisions.get(kind, ()) if kind == "cuda" or p not in self.needs_native
                     or native(p))


REGISTRY: dict[str, BackendSpec] = {}


def register_backend(name: str, *, requires: str, precisions: dict[str, tuple[str, ...]], onnx_files: bool = False,
                     auto: bool = True, needs_native: tuple[str, ...] = ()) -> Callable[[Opener], Opener]:
    """Decorator: register ``opener`` as backend ``name`` (see :class:`BackendSpec` for the rest)."""

    def add(opener: Opener) -> Opener:
        if name in REGISTRY or name == "auto":
            raise ValueError(f"backend {name!r} is registered already")
        REGISTRY[name] = BackendSpec(name, opener, requires, precisions, onnx_files, auto, needs_native)
        return opener

    return add


def is_onnx(weights: str | os.PathLike) -> bool:
    return Path(weights).suffix.lower() == ".onnx"


__all__ = ["REGISTRY", "BackendChoice", "BackendSpec", "Opener", "is_onnx", "register_backend"]

"""TensorRT engines built from the ONNX export, cached on disk, run on torch CUDA memory.

There is one engine per frame resolution, with two optimisation profiles: the resolution and its half scale
(``W // 2 x H // 2``, as :func:`~contrique_video.models.transforms.half_scale` makes it), each with the batch free from 1
to ``max_batch`` and the spatial size fixed (min = opt = max), so TensorRT picks kernels for exactly that size.
One engine per resolution makes an engine built ahead of time (``trt/build_engine.py``) the one a later run
looks up, whatever other resolutions either was given. A frame size no engine covers gets its engine the first
time it is seen (built once, then cached).

Precision: TensorRT 10 builds fp16 from the fp32 graph with ``BuilderFlag.FP16``; TensorRT 11 removed that flag
(every network is strongly typed), so fp16 is built from an fp16 copy of the graph (:mod:`.fp16`).

Engines are cached on disk by everything they are only valid for (:mod:`.engine_cache`, testable without
TensorRT or a GPU).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contrique_video.backends.base import Backend
from contrique_video.backends.engine_cache import DEFAULT_MAX_BATCH, Profile, engine_components, load_or_build, profiles_for
from contrique_video.backends.export import INPUT, OUTPUT, check_io, file_digest, read_metadata
from contrique_video.backends.fp16 import cached_fp16
from contrique_video.backends.onnx_cache import cached_export
from contrique_video.backends.registry import BackendChoice, register_backend
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.extras import require
from contrique_video.models import ResolvedModel
from contrique_video.models.transforms import TwoScale

log = logging.getLogger("contrique_video")

TRT_PRECISIONS = ("fp16", "fp32")


def import_tensorrt():
    """``tensorrt``, imported on first use so the package works without it."""
    return require("tensorrt", "--backend tensorrt (on a machine with an NVIDIA GPU; else use torch or onnxruntime)")


def trt_major(version: str) -> int:
    """Major version from ``tensorrt.__version__`` ("10.13.0.35" -> 10)."""
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise UnsupportedError(f"cannot read the TensorRT version {version!r}") from None


def uses_fp16_flag(version: str, precision: str) -> bool:
    """fp16 through the builder flag (TensorRT 10) or through an fp16 graph, strongly typed (TensorRT >= 11)."""
    return precision == "fp16" and trt_major(version) < 11


def require_cuda(device: str):
    """torch and the CUDA device, or a clear error: engines run only on an NVIDIA GPU."""
    if not str(device).startswith("cuda"):
        raise UnsupportedError(f"the tensorrt backend runs on CUDA only, not on {device!r}; use --device cuda")
    import torch

    if not torch.cuda.is_available():
        raise UnsupportedError("the tensorrt backend needs a CUDA GPU, and PyTorch sees none; "
                               "available here: --backend torch, torch-compile or onnxruntime on --device cpu")
    return torch, torch.device(device)


def build_serialized(onnx_path: Path, precision: str, profiles: Sequence[Profile], workspace_gib: float | None = None,
                     trt=None) -> bytes:
    """Build a serialised engine from the fp32 ONNX export with the TensorRT Python API."""
    trt = trt or import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flag_fp16 = uses_fp16_flag(trt.__version__, precision)
    graph = onnx_path
    flags = 0
    if precision == "fp16" and not flag_fp16:
        graph = cached_fp16(onnx_path)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if trt_major(trt.__version__) >= 11 and strongly_typed is not None:
        # 11 is always strongly typed (the flag is accepted and ignored); precision comes from the graph's types.
        flags = 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {graph}: {errors[:500]}")
    config = builder.create_builder_config()
    if flag_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    for p in profiles:
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT, *p.shapes())
        config.add_optimization_profile(profile)
    log.info("building a TensorRT %s engine for %s (%d profiles; a minute or more, once)", precision,
             onnx_path.name, len(profiles))
    started = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT could not build an engine from {graph} (see its log above)")
    log.info("TensorRT engine built in %.0f s", time.monotonic() - started)
    return bytes(serialized)


class _Engine:
    """A deserialised engine, its execution context and the profiles it serves, in profile-index order."""

    def __init__(self, engine, profiles: Sequence[Profile]):
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise ModelError("TensorRT could not create an execution context (out of GPU memory?)")
        self.profiles = list(profiles)
        self.active: int | None = None


class TensorRTBackend(Backend):
    """TensorRT fp16 or fp32 on one CUDA GPU, from the fp32 ONNX export.

    ``resolutions`` (height, width) get their engines (from the cache, or built) up front; other sizes get one
    the first time they come. ``max_batch`` is the largest batch an engine takes (the base class splits bigger
    ones) and is part of the cache key.
    """

    name = "tensorrt"

    def __init__(self, onnx_path: str | os.PathLike, device: str = "cuda", precision: str = "fp16",
                 resolutions: list[tuple[int, int]] | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                 workspace_gib: float | None = None, preprocess: TwoScale | None = None):
        if precision not in TRT_PRECISIONS:
            raise UnsupportedError(
                f"the tensorrt backend supports precision {', '.join(TRT_PRECISIONS)}, not {precision}")
        torch, self.device = require_cuda(device)
        trt = import_tensorrt()
        self.onnx_path = Path(onnx_path)
        meta = read_metadata(self.onnx_path)
        if meta.get("precision", "fp32") != "fp32":
            raise ModelError(f"{self.onnx_path} is a {meta['precision']} export; TensorRT builds from the fp32 one")
        super().__init__(_feature_dim(self.onnx_path), preprocess)
        self.precision = precision
        self.max_batch = int(max_batch)
        self.workspace_gib = workspace_gib
        self._trt, self._torch = trt, torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._model = file_digest(self.onnx_path)
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.device = torch.device("cuda", index)
        self._gpu = (torch.cuda.get_device_name(index), tuple(torch.cuda.get_device_capability(index)))
        self._stream = torch.cuda.Stream(device=self.device)
        self._engines: list[_Engine] = []
        for res in dict.fromkeys(tuple(int(v) for v in r) for r in resolutions or ()):
            self._add_engine(profiles_for([res], self.max_batch))

    def describe(self) -> str:
        return f"tensorrt {self.precision} on cuda (TensorRT {self._trt.__version__})"

    def components(self, profiles: Sequence[Profile]) -> dict[str, Any]:
        return engine_components(self._gpu[0], self._gpu[1], self._trt.__version__, self._model, self.precision,
                                 profiles)

    def _add_engine(self, profiles: list[Profile]) -> _Engine:
        with self._torch.cuda.device(self.device):
            engine = load_or_build(
                self.components(profiles),
                lambda: build_serialized(self.onnx_path, self.precision, profiles, self.workspace_gib, self._trt),
                self._deserialize,
            )
            entry = _Engine(engine, profiles)
        self._engines.append(entry)
        return entry

    def _deserialize(self, data: bytes):
        """The engine, or None when TensorRT rejects the bytes (it logs why); never a half-loaded engine."""
        try:
            return self._runtime.deserialize_cuda_engine(data)
        except Exception as exc:  # noqa: BLE001 - bindings raise RuntimeError/TypeError on some corrupt inputs
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            log.warning("TensorRT cannot deserialise the engine: %s", reason)
            return None

    def _engine_for(self, shape: tuple[int, int, int, int]) -> tuple[_Engine, int]:
        for entry in self._engines:
            for i, profile in enumerate(entry.profiles):
                if profile.covers(shape):
                    return entry, i
        h, w = shape[2:]
        log.info("no TensorRT engine covers %dx%d frames yet: getting one", w, h)
        # The full scale always comes first (Backend.__call__), so its engine already serves the half scale; a
        # shape below the 64-pixel frame minimum can only be a half scale arriving alone, and gets just itself.
        profiles = profiles_for([(h, w)], self.max_batch) if min(h, w) >= 64 else [Profile(h, w, self.max_batch)]
        entry = self._add_engine(profiles)
        return entry, next(i for i, p in enumerate(entry.profiles) if p.covers(shape))

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch, trt = self._torch, self._trt
        shape = tuple(int(v) for v in batch.shape)
        entry, index = self._engine_for(shape)
        ctx, stream = entry.context, self._stream
        with torch.cuda.device(self.device), torch.cuda.stream(stream):
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, non_blocking=True)
            if entry.active != index:
                ctx.set_optimization_profile_async(index, stream.cuda_stream)
                entry.active = index
            if not ctx.set_input_shape(INPUT, shape):
                raise ModelError(f"TensorRT refused input shape {shape} for profile {entry.profiles[index]}")
            out_dtype = {trt.float32: torch.float32, trt.float16: torch.float16}[entry.engine.get_tensor_dtype(OUTPUT)]
            out = torch.empty(tuple(ctx.get_tensor_shape(OUTPUT)), dtype=out_dtype, device=self.device)
            ctx.set_tensor_address(INPUT, x.data_ptr())
            ctx.set_tensor_address(OUTPUT, out.data_ptr())
            if not ctx.execute_async_v3(stream.cuda_stream):
                raise ModelError(f"TensorRT failed to run a batch of shape {shape}")
            result = out.float().cpu()  # on the stream, so after the engine finishes
        stream.synchronize()
        return result.numpy()


def _feature_dim(onnx_path: Path) -> int:
    """Features per scale, from the export's output shape (N x 2048 for ResNet-50)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    outputs = [o for o in graph.output if o.name == OUTPUT]
    check_io([i.name for i in graph.input], [o.name for o in outputs], onnx_path)
    dims = outputs[0].type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].dim_value:
        raise ModelError(f"{onnx_path}: output {OUTPUT!r} is not N x features")
    return int(dims[1].dim_value)


@register_backend("tensorrt", requires="tensorrt", precisions={"cuda": TRT_PRECISIONS}, onnx_files=True, auto=False)
def open_tensorrt(model: ResolvedModel, choice: BackendChoice) -> TensorRTBackend:
    """Engines from a model's fp32 export (made once into the cache) or from an fp32 ``.onnx`` file."""
    require_cuda(choice.device)  # fail in a moment, not after an export
    import_tensorrt()
    onnx_file = model.path if model.is_onnx else cached_export(model, "fp32")
    return TensorRTBackend(onnx_file, device=choice.device,
                           precision="fp16" if choice.precision == "auto" else choice.precision,
                           preprocess=model.preprocess)

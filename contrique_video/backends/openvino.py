"""The OpenVINO backend: the model's ONNX export compiled by OpenVINO's CPU plugin, fp32 or bf16.

It exists for speed: on the project's AVX2 machine it ran the built-in EfficientNet-Lite2 1.3-1.5x faster than
ONNX Runtime, with features equal to eager PyTorch to 5e-7, and on an AMX CPU its bf16 runs a ResNet-50 about
3x faster than its fp32 (README, Backends and speed). OpenVINO would pick bf16 on its own on a CPU with bf16 or
AMX instructions, which moves the built-in model's scores beyond the accuracy bounds; so fp32 is pinned unless
bf16 is asked for (auto asks only when the model's card measured it inside the bounds).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from contrique_video.backends.base import Backend
from contrique_video.backends.cpu import torch_threads
from contrique_video.backends.export import INPUT, OUTPUT, check_io, read_metadata
from contrique_video.backends.onnx_cache import cached_export
from contrique_video.backends.registry import is_onnx, register_backend
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.models.transforms import TwoScale

#: One request at a time (frames come in small batches); no pinning, so processes sharing a machine
#: (``score --workers``, Dask) are not all pinned to the same cores.
COMPILE_OPTIONS = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
#: Per precision: fp32 held on every CPU; bf16 everywhere OpenVINO's CPU plugin runs it.
PRECISION_OPTIONS = {"fp32": {"INFERENCE_PRECISION_HINT": "f32", "EXECUTION_MODE_HINT": "ACCURACY"},
                     "bf16": {"INFERENCE_PRECISION_HINT": "bf16", "EXECUTION_MODE_HINT": "PERFORMANCE"}}


class OpenVinoBackend(Backend):
    """One fp32 ONNX export compiled for OpenVINO's CPU plugin at ``precision``."""

    name = "openvino"

    def __init__(self, onnx_path: str | os.PathLike, threads: int | None = None, preprocess: TwoScale | None = None,
                 precision: str = "fp32"):
        try:
            import openvino as ov
        except ImportError as exc:  # a broken install must not take --backend auto down with it
            raise UnsupportedError(f"the openvino backend needs the openvino package ({exc}); "
                                   "run: pip install openvino, or use --backend onnxruntime") from None

        if precision not in PRECISION_OPTIONS:
            raise UnsupportedError(f"the openvino backend runs {' or '.join(PRECISION_OPTIONS)}, not {precision}")
        meta = read_metadata(onnx_path)
        if meta.get("precision", "fp32") != "fp32":
            raise UnsupportedError(f"{onnx_path} is a {meta['precision']} export; the openvino backend compiles fp32 "
                                   "exports (at fp32 or bf16)")
        try:
            core = ov.Core()
            model = core.read_model(str(onnx_path))
            check_io([p.get_any_name() for p in model.inputs], [p.get_any_name() for p in model.outputs], onnx_path)
            width = model.outputs[0].get_partial_shape()[1]
            if not width.is_static:
                raise ModelError(f"{onnx_path}: its output {OUTPUT!r} has no fixed feature count")
            self.compiled = core.compile_model(model, "CPU", {**COMPILE_OPTIONS, **PRECISION_OPTIONS[precision],
                                                              "INFERENCE_NUM_THREADS": threads or torch_threads()})
        except ModelError:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError with multi-line reports
            first = str(exc).strip().splitlines()[0][:200]
            raise ModelError(f"{onnx_path}: OpenVINO cannot load it ({first})") from None
        self.precision = precision
        self.request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one request: a Scorer shared between threads takes turns
        super().__init__(int(width.get_length()), preprocess)

    def inference_precision(self) -> str:
        """The precision OpenVINO compiled the model at (``f32`` or ``bf16``, as asked, unless its plugin ignored it)."""
        return self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            result = self.request.infer({INPUT: np.ascontiguousarray(batch, dtype=np.float32)})
            return np.array(result[OUTPUT], dtype=np.float32)  # our own copy, whatever OpenVINO does with its buffers


@register_backend("openvino", requires="openvino", precisions={"cpu": ("fp32", "bf16")}, onnx_files=True,
                  needs_native=("bf16",))
def open_openvino(weights: Path, precision: str, device: str, threads: int | None,
                  preprocess: TwoScale) -> OpenVinoBackend:
    """OpenVINO on a model (its fp32 ONNX export, made once and cached) or on an fp32 ``.onnx`` file (``auto``:
    fp32, the precision it was exported at)."""
    return OpenVinoBackend(weights if is_onnx(weights) else cached_export(weights, "fp32"), threads, preprocess,
                           "fp32" if precision == "auto" else precision)


__all__ = ["COMPILE_OPTIONS", "PRECISION_OPTIONS", "OpenVinoBackend", "open_openvino"]

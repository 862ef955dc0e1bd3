"""The OpenVINO backend: the model's ONNX export compiled by OpenVINO's CPU plugin, fp32.

It exists for speed: on the project's AVX2 machine it ran the built-in EfficientNet-Lite2 at 1080p (both
scales) in about half ONNX Runtime's time, with features equal to 2e-6 (README, Backends and speed), since
its depthwise convolutions are far better served. OpenVINO would pick bf16 on its own on a CPU with bf16
or AMX instructions (its PERFORMANCE execution mode), which moves the built-in model's scores beyond the
accuracy bounds; the compile options below pin fp32, so the score is the same on every CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from contrique_video.backends.base import Backend
from contrique_video.backends.cpu import torch_threads
from contrique_video.backends.export import INPUT, OUTPUT, check_io, read_metadata
from contrique_video.backends.onnx_cache import cached_export
from contrique_video.backends.registry import is_onnx, register_backend
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.models.transforms import TwoScale

#: fp32 everywhere; one request at a time (frames come in small batches); no pinning, so processes sharing a
#: machine (``score --workers``, Dask) are not all pinned to the same cores.
COMPILE_OPTIONS = {"INFERENCE_PRECISION_HINT": "f32", "EXECUTION_MODE_HINT": "ACCURACY", "PERFORMANCE_HINT": "LATENCY",
                   "ENABLE_CPU_PINNING": False}


class OpenVinoBackend(Backend):
    """One fp32 ONNX export compiled for OpenVINO's CPU plugin."""

    name = "openvino"

    def __init__(self, onnx_path: str | os.PathLike, threads: int | None = None, preprocess: TwoScale | None = None):
        import openvino as ov

        meta = read_metadata(onnx_path)
        if meta.get("precision", "fp32") != "fp32":
            raise UnsupportedError(f"{onnx_path} is a {meta['precision']} export; the openvino backend runs fp32 only")
        core = ov.Core()
        try:
            model = core.read_model(str(onnx_path))
            check_io([p.get_any_name() for p in model.inputs], [p.get_any_name() for p in model.outputs], onnx_path)
            self.compiled = core.compile_model(model, "CPU", {**COMPILE_OPTIONS,
                                                              "INFERENCE_NUM_THREADS": threads or torch_threads()})
        except ModelError:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError with multi-line reports
            first = str(exc).strip().splitlines()[0][:200]
            raise ModelError(f"{onnx_path}: OpenVINO cannot load it ({first})") from None
        self.request = self.compiled.create_infer_request()
        super().__init__(int(model.outputs[0].get_partial_shape()[1].get_length()), preprocess)

    def inference_precision(self) -> str:
        """The precision OpenVINO compiled the model at (``f32`` unless a CPU plugin ignored the hint)."""
        return self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({INPUT: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.array(result[OUTPUT], dtype=np.float32)  # a copy: the request reuses its output buffer


@register_backend("openvino", requires="openvino", precisions={"cpu": ("fp32",)}, onnx_files=True)
def open_openvino(weights: Path, precision: str, device: str, threads: int | None,
                  preprocess: TwoScale) -> OpenVinoBackend:
    """OpenVINO on a model (its fp32 ONNX export, made once and cached) or on an fp32 ``.onnx`` file."""
    return OpenVinoBackend(weights if is_onnx(weights) else cached_export(weights, "fp32"), threads, preprocess)


__all__ = ["COMPILE_OPTIONS", "OpenVinoBackend", "open_openvino"]

"""The ONNX Runtime backend: CPU (fp32, int8) or CUDA (fp32, fp16 through the CUDA execution provider)."""

from __future__ import annotations

import os

import numpy as np

from contrique_video.backends.base import Backend
from contrique_video.backends.cpu import inference_threads
from contrique_video.backends.export import INPUT, OUTPUT, check_io, read_metadata
from contrique_video.backends.onnx_cache import cached_export
from contrique_video.backends.registry import BackendChoice, register_backend
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.models import ResolvedModel
from contrique_video.models.transforms import TwoScale

ORT_PRECISIONS = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}


class OnnxRuntimeBackend(Backend):
    """One ONNX export in an ONNX Runtime session; its precision is the one the file records."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike, device: str = "cpu", threads: int | None = None,
                 preprocess: TwoScale | None = None):
        import onnxruntime as ort

        meta = read_metadata(onnx_path)
        self.precision = meta.get("precision", "fp32")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UnsupportedError("--device cuda with onnxruntime needs onnxruntime-gpu (CUDAExecutionProvider)")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = inference_threads(threads)
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise ModelError(f"{onnx_path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})") from None
        outputs = self.session.get_outputs()
        check_io([i.name for i in self.session.get_inputs()], [o.name for o in outputs], onnx_path)
        super().__init__(int(outputs[0].shape[1]), preprocess)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(batch)})[0].astype(np.float32, copy=False)


@register_backend("onnxruntime", requires="onnxruntime", precisions=ORT_PRECISIONS, onnx_files=True)
def open_onnxruntime(model: ResolvedModel, choice: BackendChoice) -> OnnxRuntimeBackend:
    """ONNX Runtime on a model (exported and cached at ``precision``) or on an ``.onnx`` file as it is."""
    if not model.is_onnx:
        return OnnxRuntimeBackend(cached_export(model, choice.precision), choice.device, choice.threads,
                                  model.preprocess)
    backend = OnnxRuntimeBackend(model.path, choice.device, choice.threads, model.preprocess)
    if choice.precision not in ("auto", backend.precision):
        raise UnsupportedError(f"{model.path} is a {backend.precision} export; it cannot run at {choice.precision}")
    return backend


__all__ = ["ORT_PRECISIONS", "OnnxRuntimeBackend", "open_onnxruntime"]

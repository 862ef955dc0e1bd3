"""ONNX export of the encoder, int8 quantisation, and the ONNX Runtime backend.

The exported graph is one scale of the model module (``Contrique.forward``, or an EfficientNet-Lite layout):
``image`` (N x 3 x H x W float32 in [0, 1], N, H and W dynamic) to ``feature`` (N x D, pooled). Batch norm is
folded into the convolutions. TensorRT builds its engines from the same file (see ``trt/``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from contrique_video import __version__
from contrique_video.backends.base import Backend
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.models.card import load_model, model_digest

log = logging.getLogger("contrique_video")
INPUT, OUTPUT = "image", "feature"
OPSET = 17
ORT_PRECISIONS = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}


def file_digest(path: str | os.PathLike) -> str:
    """First 16 hex digits of the file's SHA-256: names cached exports and engines after the weights."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """Where exported models and engines are kept: $CONTRIQUE_VIDEO_CACHE or ~/.cache/contrique-video."""
    root = os.environ.get("CONTRIQUE_VIDEO_CACHE") or Path.home() / ".cache" / "contrique-video"
    return Path(root)


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, source: str = "") -> Path:
    """Write the encoder as ONNX (fp32, opset 17), atomically; ``source`` (the weights' digest) goes in metadata."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript and
        # produced no better graph for this plain convolutional network.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval().float(), (torch.zeros(1, 3, 224, 224),), str(tmp), dynamo=False, opset_version=OPSET,
            input_names=[INPUT], output_names=[OUTPUT], do_constant_folding=True,
            dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"}, OUTPUT: {0: "batch"}},
        )
    proto = onnx.load(str(tmp))
    set_metadata(proto, {"contrique_video": __version__, "source": source, "precision": "fp32",
                         "encoder": encoder_name(model)})
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


def encoder_name(model: torch.nn.Module) -> str:
    """``resnet50``, ``efficientnet-lite2/stages-meanstd``, ...: recorded in exports so int8 can refuse a family."""
    trunk = getattr(model, "trunk", None)
    if trunk is not None and hasattr(trunk, "variant"):
        return f"efficientnet-{trunk.variant}/{model.layout}"
    return str(getattr(model, "arch", type(model).__name__))


#: Families that int8 refuses, and why (measured on CLIVE images with a table from 8 others).
NO_INT8 = {"efficientnet-lite": "static int8 moved EfficientNet-Lite2's features by 11% (relative L2; ResNet-50: "
                                "5.5%), too far for its head; run it at fp32"}


def check_int8(fp32_path: str | os.PathLike) -> None:
    meta = read_metadata(fp32_path)
    family = meta.get("encoder", "").split("/")[0].rstrip("0123456789")
    if family in NO_INT8:
        raise UnsupportedError(f"int8 is not offered for {meta['encoder']}: {NO_INT8[family]}")


def set_metadata(proto, values: dict[str, str]) -> None:
    kept = {p.key: p.value for p in proto.metadata_props}
    kept.update(values)
    del proto.metadata_props[:]
    for k, v in kept.items():
        proto.metadata_props.add(key=k, value=v)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The file's metadata; a file ONNX cannot parse raises ModelError (never half-used)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...: all mean "not a usable model"
        raise ModelError(f"{path}: not a valid ONNX model ({type(exc).__name__})") from None
    return {p.key: p.value for p in proto.metadata_props}


def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike, calibration: str | os.PathLike,
                  frames: list[np.ndarray] | None = None) -> Path:
    """Static int8 (QDQ, per-channel weights, 7-bit weights for CPUs without VNNI) from a calibration table.

    ``calibration`` is ONNX Runtime's JSON table of activation ranges. When it does not exist yet it is
    computed from ``frames`` (RGB arrays, both scales of each are used) and saved, so the same table
    quantises the same way on every machine.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from contrique_video.backends.base import half_scale, to_array

    calibration, out_path = Path(calibration), Path(out_path)
    check_int8(fp32_path)
    if not calibration.is_file() and not frames:
        raise ModelError(f"int8 needs a calibration table ({calibration}) or frames to compute one")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            pairs = ((to_array(f), to_array(half_scale(f))) for f in frames or [])
            self._batches = (x[None] for pair in pairs for x in pair)

        def get_next(self):
            x = next(self._batches, None)
            return None if x is None else {INPUT: x}

    from onnxruntime.quantization.shape_inference import quant_pre_process

    tmp = out_path.with_name(out_path.name + ".partial")
    prepared = out_path.with_name(out_path.name + ".prep.partial")
    try:
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        if calibration.is_file():
            check_table(prepared, calibration)
        quantize_static(
            str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(calibration),
        )
    except (KeyError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"int8 calibration table {calibration} does not fit this model: {exc}") from None
    finally:
        prepared.unlink(missing_ok=True)
    import onnx

    proto = onnx.load(str(tmp))
    set_metadata(proto, {"precision": "int8"})
    onnx.save(proto, str(tmp))
    tmp.replace(out_path)
    return out_path


def check_table(model_path: Path, table: Path) -> None:
    """A calibration table must name exactly this graph's activations: ONNX Runtime would silently quantise
    with whatever ranges happen to share a name (a ResNet-18 and a ResNet-50 share many)."""
    import json

    import onnx

    try:
        ranges = set(json.loads(table.read_text())["data"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"int8 calibration table {table} is unreadable ({type(exc).__name__})") from None
    graph = onnx.load(str(model_path)).graph
    weights = {t.name for t in graph.initializer}
    convs = {n for node in graph.node if node.op_type == "Conv" for n in (*node.input, *node.output)} - weights
    values = {i.name for i in graph.input} | {o for node in graph.node for o in node.output}
    if ranges - values or convs - ranges:
        raise ModelError(f"int8 calibration table {table} does not fit this model: "
                         f"{len(ranges - values)} unknown and {len(convs - ranges)} missing activations")


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on CPU (fp32, int8) or CUDA (fp32, fp16 through the CUDA execution provider)."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        import onnxruntime as ort

        meta = read_metadata(onnx_path)
        self.precision = meta.get("precision", "fp32")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UnsupportedError("--device cuda with onnxruntime needs onnxruntime-gpu (CUDAExecutionProvider)")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise ModelError(f"{onnx_path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})") from None
        outputs = self.session.get_outputs()
        if [i.name for i in self.session.get_inputs()] != [INPUT] or [o.name for o in outputs] != [OUTPUT]:
            raise ModelError(f"{onnx_path}: not a contrique-video export (expects input {INPUT!r}, output {OUTPUT!r})")
        super().__init__(int(outputs[0].shape[1]))

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(batch)})[0].astype(np.float32, copy=False)


def calibration_table(digest: str) -> Path:
    """The int8 activation ranges for weights with this digest: shipped for the built-in model, else the one
    ``export-onnx --precision int8 --calibrate`` made in the cache."""
    from importlib import resources

    shipped = Path(str(resources.files("contrique_video") / "assets" / "int8" / f"{digest}.json"))
    return shipped if shipped.is_file() else cache_dir() / "onnx" / f"{digest}-int8-calibration.json"


def cached_export(weights: str | os.PathLike, precision: str = "fp32") -> Path:
    """The ONNX file for a checkpoint at a precision, exported (and quantised) once into the cache.

    A cached file that does not parse or names other weights is rebuilt, with a warning, never used.
    """
    if precision == "fp16":  # converted from the fp32 export, and cached by fp16.py
        from contrique_video.fp16 import cached_fp16

        return cached_fp16(cached_export(weights, "fp32"))
    weights = Path(weights)
    digest = model_digest(weights)
    path = cache_dir() / "onnx" / f"{digest}-{precision}.onnx"
    if path.is_file():
        try:
            meta = read_metadata(path)
            if meta.get("source") == digest and meta.get("precision") == precision:
                return path
            log.warning("%s was made from other weights or at another precision: rebuilding it", path)
        except ModelError as exc:
            log.warning("%s: rebuilding it", exc)
    if precision == "fp32":
        log.info("exporting %s to ONNX (once; kept in %s)", weights.name, path.parent)
        return export_onnx(load_model(weights), path, source=digest)
    if precision == "int8":
        check_int8(cached_export(weights, "fp32"))
        table = calibration_table(digest)
        if not table.is_file():
            raise UnsupportedError(
                f"int8 for {weights.name} needs a calibration table: run `contrique-video export-onnx --weights "
                f"{weights} --precision int8 --calibrate MEDIA...` once"
            )
        log.info("quantising %s to int8 (once; kept in %s)", weights.name, path.parent)
        return quantize_int8(cached_export(weights, "fp32"), path, table)
    raise UnsupportedError(f"no {precision} ONNX export; available: fp32, fp16, int8")


def open_onnxruntime(weights: str | os.PathLike, precision: str = "auto", device: str = "cpu",
                     threads: int | None = None) -> OnnxRuntimeBackend:
    """ONNX Runtime on a checkpoint (exported and cached) or on an ``.onnx`` file as it is."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    available = ORT_PRECISIONS[kind]
    if Path(weights).suffix.lower() == ".onnx":
        backend = OnnxRuntimeBackend(weights, device, threads)
        if precision not in ("auto", backend.precision):
            raise UnsupportedError(f"{weights} is a {backend.precision} export; it cannot run at {precision}")
        return backend
    precision = available[0] if precision == "auto" else precision
    if precision not in available:
        raise UnsupportedError(f"onnxruntime on {kind} supports precision {', '.join(available)}, not {precision}")
    return OnnxRuntimeBackend(cached_export(weights, precision), device, threads)

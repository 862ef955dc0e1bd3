"""The OpenVINO backend: the model compiled by OpenVINO's CPU plugin, fp32 or bf16.

It exists for speed: on the project's AVX2 machine it ran the built-in EfficientNet-Lite2 1.3-1.5x faster than
ONNX Runtime, with features equal to eager PyTorch to 5e-7, and on an AMX CPU its bf16 runs a ResNet-50 about
3x faster than its fp32 (README, Backends and speed). OpenVINO would pick bf16 on its own on a CPU with bf16 or
AMX instructions, which moves the built-in model's scores beyond the accuracy bounds; so fp32 is pinned unless
bf16 is asked for (auto asks only when the model's card measured it inside the bounds).

A card that ships its model in OpenVINO's own format (IR: ``.xml`` + ``.bin``, the built-in model's) is read as
it is, after its SHA-256 check: a first run then imports no torch and exports nothing (about 5 s of a first
run on two cores). Other models (cards without one, checkpoints) are converted once per machine to an IR in
the cache: their ONNX graph goes to OpenVINO in memory, never through the ``onnx`` package, and later runs
read the IR without importing torch or onnx (about 2 s of a start-up on two cores).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from contrique_video.backends.base import Backend
from contrique_video.backends.cpu import inference_threads
from contrique_video.backends.export import INPUT, OUTPUT, check_io, encoder_id, onnx_bytes, read_metadata
from contrique_video.backends.registry import BackendChoice, is_onnx, register_backend
from contrique_video.cache import cache_dir, preparing
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.models import ResolvedModel, resolve_model
from contrique_video.models.card import checked_ir
from contrique_video.models.transforms import TwoScale

log = logging.getLogger("contrique_video")

#: One request at a time (frames come in small batches); no pinning, so processes sharing a machine
#: (``score --workers``, Dask) are not all pinned to the same cores.
COMPILE_OPTIONS = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
#: Per precision: fp32 held on every CPU; bf16 everywhere OpenVINO's CPU plugin runs it.
PRECISION_OPTIONS = {"fp32": {"INFERENCE_PRECISION_HINT": "f32", "EXECUTION_MODE_HINT": "ACCURACY"},
                     "bf16": {"INFERENCE_PRECISION_HINT": "bf16", "EXECUTION_MODE_HINT": "PERFORMANCE"}}
#: Where a converted model's IR records what it was made from (``rt_info``), checked before it is used.
RT_KEY = "contrique_video"
IR_LAYOUT = "2"  # bump when the IR's graph or rt_info changes


def import_openvino():
    try:
        import openvino as ov
    except ImportError as exc:  # a broken install must not take --backend auto down with it
        raise UnsupportedError(f"the openvino backend needs the openvino package ({exc}); "
                               "run: pip install openvino, or use --backend onnxruntime") from None
    return ov


def runs_bf16(core) -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here: the CPU flags (``cpu.NATIVE``) decide what is offered,
    and this second check catches an OpenVINO build that would emulate it or fall back to fp32 silently."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def ir_path(weights: str | os.PathLike | ResolvedModel) -> Path:
    return cache_dir() / "openvino" / f"{resolve_model(weights).digest}-fp32.xml"


def _ir_problem(path: Path, digest: str, ov) -> str | None:
    """Why the cached IR at ``path`` must not be used for ``digest``, or None."""
    if not (path.is_file() and path.with_suffix(".bin").is_file()):
        return "missing"
    try:
        model = ov.Core().read_model(str(path))
        made = {k: model.get_rt_info([RT_KEY, k]).astype(str) for k in ("source", "layout")}
    except Exception as exc:  # OpenVINO raises RuntimeError for a damaged file or a missing key
        return f"unreadable ({str(exc).strip().splitlines()[0][:80] if str(exc).strip() else type(exc).__name__})"
    if made != {"source": digest, "layout": IR_LAYOUT}:
        return "made from other weights or by another version"
    return None


def _convert(ov, onnx: bytes, scratch: Path, transform: bool = True):
    """The ONNX graph as an OpenVINO model, as ``ov.convert_model`` makes it (same ops, bit-identical features at fp32
    and bf16) but read by the ONNX frontend and given the same offline transformations directly: ``convert_model``
    cost a first run 3.3 s wall and 0.8 s CPU on two cores, this 0.2 s. Where the transformations' module (private
    to OpenVINO's converter) is missing, ``convert_model`` does it. ``transform=False``: the frontend's graph as
    read, every constant a weight of the state_dict (the CPU plugin makes the transformations when it compiles)."""
    try:
        from openvino._offline_transformations import apply_moc_transformations
    except ImportError:
        if transform:
            return ov.convert_model(io.BytesIO(onnx))
    scratch.write_bytes(onnx)
    model = ov.Core().read_model(str(scratch))
    if transform:
        apply_moc_transformations(model, cf=False)
    return model


def _save_ir(ov, weights: ResolvedModel, xml: Path, shipped: bool = False) -> None:
    """Convert ``weights`` and write the IR to ``xml`` (and its ``.bin``), replacing each file whole, the ``.xml``
    last: a reader checks it names these weights. ``shipped``: the IR a card ships, see :func:`write_shipped_ir`."""
    model = weights.load()
    staging = Path(tempfile.mkdtemp(dir=xml.parent, prefix=f".{xml.stem}."))
    try:
        converted = _convert(ov, onnx_bytes(model, fold=False), staging / "model.onnx", transform=not shipped)
        for key, value in {"source": weights.digest, "layout": IR_LAYOUT, "encoder": encoder_id(model)}.items():
            converted.set_rt_info(value, [RT_KEY, key])
        ov.save_model(converted, str(staging / xml.name), compress_to_fp16=shipped)
        os.replace(staging / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
        os.replace(staging / xml.name, xml)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_shipped_ir(weights: str | os.PathLike | ResolvedModel, xml: str | os.PathLike) -> Path:
    """Write the IR a card ships (``scripts/build_builtin.py --openvino``). It is the frontend's graph before
    OpenVINO's transformations, so every constant is a weight of the float16 state_dict and is stored as float16
    without loss (folding batch norm into the convolutions makes constants that float16 would round); the CPU
    plugin makes the same transformations when it compiles, and the features equal the cached IR's bit for bit
    at fp32 and bf16 (tests/backends/test_shipped_ir.py)."""
    _save_ir(import_openvino(), resolve_model(weights), Path(xml), shipped=True)
    return Path(xml)


def model_ir(weights: str | os.PathLike | ResolvedModel) -> Path:
    """The IR OpenVINO runs for a model: the one its card ships (SHA-256 checked), else :func:`cached_ir`."""
    weights = resolve_model(weights)
    shipped = checked_ir(weights.card) if weights.card else None
    return shipped or cached_ir(weights)


def cached_ir(weights: str | os.PathLike | ResolvedModel) -> Path:
    """The model's fp32 IR, converted once per machine into the cache (several processes may ask at once: one
    converts, the others wait for it); a damaged or stale one is remade with a warning."""
    ov = import_openvino()
    weights = resolve_model(weights)
    path = ir_path(weights)
    if _ir_problem(path, weights.digest, ov) is None:
        return path
    with preparing(path):
        problem = _ir_problem(path, weights.digest, ov)  # another process may have made it while this one waited
        if problem is None:
            return path
        if problem != "missing":
            log.warning("cached OpenVINO model %s is %s: remaking it", path, problem)
        start = time.perf_counter()
        _save_ir(ov, weights, path)
        log.info("prepared %s for OpenVINO in %.1f s (once per machine; kept in %s)", weights.label,
                 time.perf_counter() - start, path.parent)
    return path


class OpenVinoBackend(Backend):
    """One fp32 model (an IR from :func:`model_ir`, or an ONNX export) compiled for OpenVINO's CPU plugin at
    ``precision``."""

    name = "openvino"

    def __init__(self, onnx_path: str | os.PathLike, threads: int | None = None, preprocess: TwoScale | None = None,
                 precision: str = "fp32"):
        ov = import_openvino()
        if precision not in PRECISION_OPTIONS:
            raise UnsupportedError(f"the openvino backend runs {' or '.join(PRECISION_OPTIONS)}, not {precision}")
        if is_onnx(onnx_path):  # a user's file: check it is one of our fp32 exports (an IR from model_ir is)
            meta = read_metadata(onnx_path)
            if meta.get("precision", "fp32") != "fp32":
                raise UnsupportedError(f"{onnx_path} is a {meta['precision']} export; the openvino backend compiles "
                                       "fp32 exports (at fp32 or bf16)")
        core = ov.Core()
        if precision == "bf16" and not runs_bf16(core):
            raise UnsupportedError("OpenVINO runs no bf16 on this CPU (its CPU plugin lists no BF16 capability); "
                                   "use --precision fp32")
        try:
            model = core.read_model(str(onnx_path))
            check_io([p.get_any_name() for p in model.inputs], [p.get_any_name() for p in model.outputs], onnx_path)
            width = model.outputs[0].get_partial_shape()[1]
            if not width.is_static:
                raise ModelError(f"{onnx_path}: its output {OUTPUT!r} has no fixed feature count")
            self.compiled = core.compile_model(model, "CPU", {**COMPILE_OPTIONS, **PRECISION_OPTIONS[precision],
                                                              "INFERENCE_NUM_THREADS": inference_threads(threads)})
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
def open_openvino(model: ResolvedModel, choice: BackendChoice) -> OpenVinoBackend:
    """OpenVINO on a model (the IR its card ships, or its fp32 IR converted once and cached) or on an fp32 ``.onnx`` file (``auto``:
    fp32, the precision it was exported at)."""
    return OpenVinoBackend(model.path if model.is_onnx else model_ir(model), choice.threads, model.preprocess,
                           "fp32" if choice.precision == "auto" else choice.precision)


__all__ = ["COMPILE_OPTIONS", "PRECISION_OPTIONS", "OpenVinoBackend", "cached_ir", "ir_path", "model_ir", "open_openvino",
           "runs_bf16", "write_shipped_ir"]

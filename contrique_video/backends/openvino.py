"""The OpenVINO backend: the model compiled by OpenVINO's CPU plugin, fp32 or bf16.

It exists for speed: on the project's AVX2 machine it ran the built-in EfficientNet-Lite2 1.3-1.5x faster than
ONNX Runtime, with features equal to eager PyTorch to 5e-7, and on an AMX CPU its bf16 runs a ResNet-50 about
3x faster than its fp32 (README, Backends and speed). OpenVINO would pick bf16 on its own on a CPU with bf16 or
AMX instructions, which moves the built-in model's scores beyond the accuracy bounds; so fp32 is pinned unless
bf16 is asked for (auto asks only when the model's card measured it inside the bounds).

A model (card or checkpoint) is converted once per machine to OpenVINO's own format (IR: ``.xml`` + ``.bin``)
in the cache, and later runs read the IR without importing torch or onnx (about 2 s of a start-up on two
cores). A card that ships an IR (the built-in model's) is converted from it, after its SHA-256 check, in 0.3 s
without torch or an export (these cost a first run about 5 s on two cores); other models from their ONNX graph.
"""

from __future__ import annotations

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


def _graph(ov, weights: ResolvedModel, scratch: Path, transform: bool = True, from_export: bool = False):
    """The model as an OpenVINO graph: the IR its card ships (SHA-256 checked; no torch, no export) unless
    ``from_export``, else its ONNX export (``scratch``) read by OpenVINO's ONNX frontend, never through the ``onnx``
    package. ``transform``: then given the converter's offline transformations directly, the graph
    ``ov.convert_model`` makes (bit-identical features at fp32 and bf16) at 0.2 s instead of its 3.3 s wall on two
    cores; where their module (private to OpenVINO) is missing, the CPU plugin makes them at every compile instead.
    Without: every constant is a weight of the state_dict (what a card ships)."""
    shipped = None if from_export or weights.card is None else checked_ir(weights.card)
    if shipped is None:
        module = weights.load()
        scratch.write_bytes(onnx_bytes(module, fold=False))
    model = ov.Core().read_model(str(shipped or scratch))
    tags = {"source": weights.digest, "layout": IR_LAYOUT, **({} if shipped else {"encoder": encoder_id(module)})}
    for key, value in tags.items():
        model.set_rt_info(value, [RT_KEY, key])
    if transform:
        try:
            from openvino._offline_transformations import apply_moc_transformations
        except ImportError:
            return model
        apply_moc_transformations(model, cf=False)
    return model


def save_ir(weights: str | os.PathLike | ResolvedModel, xml: str | os.PathLike, from_export: bool = False,
            shipped: bool = False) -> Path:
    """Write the model's IR to ``xml`` (and its ``.bin``), each file replaced whole, the ``.xml`` last (a reader checks
    it names these weights): fp32 and transformed, as the cache keeps it, from the IR the card ships unless
    ``from_export`` (:func:`_graph`). ``shipped``: the IR a card ships instead (``scripts/build_builtin.py
    --openvino``), made from the export: the frontend's graph before the transformations, so every constant is a
    weight of the float16 state_dict and is stored as float16 without loss (batch norm folded into the
    convolutions makes constants float16 would round). Transformed, it gives the export's features bit for bit at
    fp32 and bf16 (tests/backends/test_shipped_ir.py)."""
    ov = import_openvino()
    weights, xml = resolve_model(weights), Path(xml)
    staging = Path(tempfile.mkdtemp(dir=xml.parent, prefix=f".{xml.stem}."))
    try:
        model = _graph(ov, weights, staging / "model.onnx", transform=not shipped, from_export=from_export or shipped)
        ov.save_model(model, str(staging / xml.name), compress_to_fp16=shipped)
        os.replace(staging / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
        os.replace(staging / xml.name, xml)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return xml


def cached_ir(weights: str | os.PathLike | ResolvedModel) -> Path:
    """The model's fp32 IR, converted once per machine into the cache (several processes may ask at once: one
    converts, the others wait for it); a damaged or stale one is remade with a warning. The IR a card ships is
    the source where there is one (0.3 s, no torch); compiling that one directly cost every start 0.3 s more CPU."""
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
        save_ir(weights, path)
        log.info("prepared %s for OpenVINO in %.1f s (once per machine; kept in %s)", weights.label,
                 time.perf_counter() - start, path.parent)
    return path


class OpenVinoBackend(Backend):
    """One fp32 model (an IR from :func:`cached_ir`, or an ONNX export) compiled for OpenVINO's CPU plugin at
    ``precision``."""

    name = "openvino"

    def __init__(self, onnx_path: str | os.PathLike, threads: int | None = None, preprocess: TwoScale | None = None,
                 precision: str = "fp32"):
        ov = import_openvino()
        if precision not in PRECISION_OPTIONS:
            raise UnsupportedError(f"the openvino backend runs {' or '.join(PRECISION_OPTIONS)}, not {precision}")
        if is_onnx(onnx_path):  # a user's file: check it is one of our fp32 exports (an IR from cached_ir is)
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
    """OpenVINO on a model (its fp32 IR, converted once and cached) or on an fp32 ``.onnx`` file (``auto``:
    fp32, the precision it was exported at)."""
    return OpenVinoBackend(model.path if model.is_onnx else cached_ir(model), choice.threads, model.preprocess,
                           "fp32" if choice.precision == "auto" else choice.precision)


__all__ = ["COMPILE_OPTIONS", "PRECISION_OPTIONS", "OpenVinoBackend", "cached_ir", "ir_path", "open_openvino", "runs_bf16",
           "save_ir"]

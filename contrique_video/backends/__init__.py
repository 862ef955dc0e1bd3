"""Encoder backends: a model (built-in id, card, checkpoint or ONNX export) to a callable from RGB frames to
features, on PyTorch, ONNX Runtime, OpenVINO or TensorRT.

    >>> from contrique_video.backends import open_backend
    >>> encoder = open_backend("builtin-v3", "onnxruntime", "fp32")
    >>> features = encoder([rgb])          # N x feature_dim, [full scale | half scale]

Backends are registered by name (:mod:`.registry`); the modules imported below register theirs, and the
CLI's ``--backend`` choices, ``info`` and ``bench`` read :data:`REGISTRY`. A new backend is a module here with
a :func:`~.registry.register_backend` opener, plus its import below.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

# Each module registers its backend; this order is the order of the CLI's --backend choices.
from contrique_video.backends import pytorch, onnx, openvino, tensorrt  # noqa: F401, I001
from contrique_video.backends.base import Backend
from contrique_video.backends.registry import REGISTRY, BackendChoice, BackendSpec
from contrique_video.errors import UnsupportedError
from contrique_video.models import ResolvedModel, resolve_model

log = logging.getLogger("contrique_video")

BACKENDS = ("auto", *REGISTRY)
PRECISIONS = ("auto", *dict.fromkeys(p for spec in REGISTRY.values() for ps in spec.precisions.values() for p in ps))
#: What auto runs, best first: the first installed path the CPU runs natively (a reduced precision only with an
#: in-bounds accuracy entry in the model's card; see autotune.prefer). On a CPU: OpenVINO fp32 was the fastest
#: path for the built-in model on the AVX2-only AMD and the Intel AMX machines, 1.3-1.5x ONNX Runtime; OpenVINO
#: bf16 3.4x eager bf16 on the AMX one (README, Backends and speed). ``contrique-video bench --autotune`` times
#: the candidates on this machine instead and auto then uses that measurement.
PREFERENCE = {"cuda": (("tensorrt", "fp16"), ("torch", "fp16")),
              "cpu": (("openvino", "fp32"), ("onnxruntime", "fp32"), ("torch", "fp32"), ("openvino", "bf16"),
                      ("torch", "bf16"))}


def paths(device: str = "cpu") -> list[tuple[str, str]]:
    """(backend, precision) pairs this install offers on ``device``, in registry order (``info``, ``bench``)."""
    return [(s.name, p) for s in REGISTRY.values() if s.installed() for p in s.offered(device)]


def auto_paths() -> list[tuple[str, str]]:
    """The CPU pairs auto may time, before its native-instruction and accuracy checks (autotune.candidates)."""
    return [(s.name, p) for s in REGISTRY.values() if s.auto and s.installed() for p in s.precisions.get("cpu", ())]


def available(cuda: bool) -> str:
    """Each backend with the precisions this machine runs it at (``cuda``: whether a GPU is usable), for ``info``."""
    parts = []
    for spec in REGISTRY.values():
        where = [f"{', '.join(spec.offered(d))} on {d.upper()}" for d in ("cpu", "cuda")
                 if spec.offered(d) and (d == "cpu" or cuda)]
        state = "; ".join(where) or "needs a CUDA GPU"
        parts.append(f"{spec.name} ({state})" if spec.installed() else f"{spec.name} not installed")
    return "; ".join(parts)


def auto_choice(device: str, weights: str | os.PathLike | ResolvedModel | None = None, threads: int | None = None,
                precision: str = "auto", head: str | None = None) -> tuple[str, str]:
    """What ``--backend auto`` runs: the best path whose scores stay inside the accuracy bounds.

    CPU with ``weights``: this machine's measured choice when ``bench --autotune`` made one, else the first path
    of :data:`PREFERENCE` the CPU and the model's card allow (:func:`contrique_video.backends.autotune.prefer`:
    nothing is timed, so a first run pays no measurement); with a ``precision`` (fp32 for fitting, or asked
    for), the best path at that precision. A reduced precision needs an accuracy entry measured with ``head`` (the
    name of the head in use; None: the model's default). Otherwise the first installed path of :data:`PREFERENCE` for the device.
    """
    from contrique_video.backends import autotune

    kind = "cuda" if device.startswith("cuda") else "cpu"
    if kind == "cpu" and weights is not None:
        weights = resolve_model(weights)
        choice = autotune.cached_choice(weights, threads)
        if choice and precision == "auto" and not autotune.measured_for(weights, (choice.backend, choice.precision), head):
            log.debug("backend auto: fp32, not the measured %s %s (its accuracy was not measured with head %s)",
                      choice.backend, choice.precision, autotune.head_in_use(weights, head))
            precision = "fp32"
        choice = choice or autotune.prefer(weights, auto_paths(), PREFERENCE[kind], head)
        picked = choice.fastest_at(precision) if precision != "auto" else (choice.backend, choice.precision)
        # -v only: a run measures nothing (`bench --autotune` prints what it measured), and a first run's
        # "prepared ... for OpenVINO" line already names the backend
        if picked == (choice.backend, choice.precision):
            log.debug("%s", choice.line())
        elif picked is not None:
            log.debug("backend auto: %s %s (the fastest %s path measured here)", *picked, precision)
        else:
            offering = [p for p in [*PREFERENCE[kind], *paths(device)] if p[1] == precision and REGISTRY[p[0]].installed()]
            # none offers it here (bf16 on a CPU without bf16): open_backend then says which precisions exist
            picked = offering[0] if offering else (next(n for n, _ in PREFERENCE[kind] if REGISTRY[n].installed()),
                                                   precision)
            log.debug("backend auto: %s %s (the preferred %s path here)", *picked, precision)
        return picked
    return next(p for p in PREFERENCE[kind] if REGISTRY[p[0]].installed())


def autotune_here(weights: str | os.PathLike, threads: int | None = None):
    """Time auto's CPU candidates for ``weights`` on this machine (10-30 s on two cores) and keep the result, which
    ``--backend auto`` then uses instead of :data:`PREFERENCE`; returns the :class:`~.autotune.Choice`."""
    from contrique_video.backends import autotune

    weights = resolve_model(weights)

    def timer(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
        return autotune.measure(lambda p: open_backend(weights, *p, "cpu", threads), pairs)

    return autotune.choose(weights, auto_paths(), timer, threads, remeasure=True)


def open_backend(weights: str | os.PathLike | ResolvedModel, backend: str = "auto", precision: str = "auto",
                 device: str = "cpu", threads: int | None = None) -> Backend:
    """The encoder for a built-in model's id, a card (``.json``), a checkpoint (``.pt``/``.tar``), an ONNX
    export (``.onnx``) or a model resolved already (:func:`~contrique_video.models.resolve_model`). ONNX files
    the backends need are exported from the model once and cached."""
    return open_choice(resolve_model(weights), BackendChoice(backend, precision, device, threads))


def open_choice(model: ResolvedModel, choice: BackendChoice) -> Backend:
    """:func:`open_backend` for a resolved model and a :class:`BackendChoice` (auto and precision resolved here)."""
    choice = resolve_choice(model, choice)
    return REGISTRY[choice.backend].opener(model, choice)


def resolve_choice(model: ResolvedModel, choice: BackendChoice) -> BackendChoice:
    """``choice`` with ``auto`` replaced by the backend and precision it runs, refused in one line where the
    backend does not run the model at that precision on that device."""
    backend, precision, device = choice.backend, choice.precision, choice.device
    if backend != "auto" and backend not in REGISTRY:
        raise UnsupportedError(f"unknown backend {backend!r}; available: auto, {', '.join(REGISTRY)}")
    if precision not in PRECISIONS:
        raise UnsupportedError(f"unknown precision {precision!r}; available: {', '.join(PRECISIONS)}")
    onnx_file = model.is_onnx
    if backend == "auto":
        measured = not onnx_file and not choice.cuda
        if onnx_file:
            backend = "onnxruntime"  # an ONNX file runs at the precision it was exported at
        elif measured:
            # per machine, model and head
            backend, precision = auto_choice(device, model, choice.threads, precision, choice.head)
        else:
            backend, auto_precision = auto_choice(device)
            if precision == "auto":
                precision = auto_precision
            elif precision not in REGISTRY[backend].offered(device):  # e.g. bf16 on a CPU: the path offering it
                backend = next((n for n, p in paths(device) if p == precision), backend)
        if not measured:
            log.info("backend auto: %s %s on %s", backend, precision, device)
    spec: BackendSpec = REGISTRY[backend]
    if onnx_file and not spec.onnx_files:
        onnx_names = [s.name for s in REGISTRY.values() if s.onnx_files]
        raise UnsupportedError(f"{model.path.name} is an ONNX file: use --backend {' or '.join(onnx_names)}")
    offered = spec.offered(device)
    kind = "cuda" if choice.cuda else "cpu"
    if not offered:
        where = " or ".join(spec.precisions)
        raise UnsupportedError(f"the {backend} backend runs on {where.upper()} only, not on {device!r}; "
                               f"use --device {where}")
    if precision == "auto" and not onnx_file:
        precision = offered[0]
    elif precision != "auto" and precision not in offered:
        raise UnsupportedError(f"the {backend} backend on {kind} supports precision {', '.join(offered)}, not {precision}")
    return replace(choice, backend=backend, precision=precision)


__all__ = ["BACKENDS", "PRECISIONS", "PREFERENCE", "REGISTRY", "Backend", "BackendChoice", "BackendSpec", "auto_choice",
           "autotune_here", "available", "auto_paths", "open_backend", "open_choice", "paths", "resolve_choice"]

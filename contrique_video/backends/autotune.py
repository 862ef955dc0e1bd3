"""What ``--backend auto`` runs on a CPU: per machine and per model, from what the CPU has and the installed
runtimes; measured only when asked (``contrique-video bench --autotune``).

1. **Candidates.** The registry's installed CPU paths that auto may pick (``BackendSpec.auto``): fp32 always,
   a reduced precision only where the CPU runs it natively (bf16: ``avx512_bf16`` or ``amx_bf16`` in
   /proc/cpuinfo) *and* the model's card holds a measured accuracy entry for that backend and precision (keyed
   ``"openvino bf16"``: the same precision moves scores differently on another runtime) inside the bounds
   (:data:`SRCC_BOUND`, :data:`SCORE_BOUND`; entries are written by ``contrique-video precision-check``),
   measured with the head in use (the entry's ``head``: on builtin-v3, bf16 moved one head's scores 1.125 points
   on average and another's 0.48, so ``--head clive`` runs fp32 unless measured). A checkpoint without a card
   has no such entries, so it stays at fp32. ``torch.compile`` is not a candidate:
   it costs 15-40 s per new frame size on two cores; ask for it with ``--backend torch-compile``.
2. **Choice without measuring** (:func:`prefer`, the default): the first candidate in a fixed preference order
   (``backends.PREFERENCE``), an in-bounds reduced precision before fp32. Timing every candidate on a 720p
   frame cost a first run 10-30 s on two cores, more than scoring a short clip; the order comes from those
   measurements on three CPUs (README, Backends and speed).
3. **Measurement** (:func:`choose`, for ``bench --autotune``). Each candidate scores one 720p frame (both scales):
   one warm-up, then :data:`REPEATS` timed runs round-robin over the candidates; the fastest best time wins.
   Native reduced-precision paths without an in-bounds entry are timed too but never picked, so an explicit
   ``--precision bf16`` gets the fastest bf16 path.
4. **Cache.** A measured result is kept in ``$CONTRIQUE_VIDEO_CACHE/auto/<key>.json`` (default
   ``~/.cache/contrique-video``) and used by auto from then on, keyed by CPU model, the relevant flags, thread
   count, the model's digest, its card's accuracy entries, the measured frame size and the torch, onnxruntime
   and openvino versions (read without importing them). A file that does not parse or holds another key is
   ignored, with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contrique_video.backends.cpu import NATIVE, RELEVANT_FLAGS, inference_threads, native, read_cpuinfo
from contrique_video.cache import cache_dir
from contrique_video.errors import ContriqueError, UnsupportedError
from contrique_video.files import atomic_write
from contrique_video.models import ResolvedModel, resolve_model
from contrique_video.timing import round_robin

if TYPE_CHECKING:
    from contrique_video.backends.base import Backend

log = logging.getLogger("contrique_video")

#: Accuracy bounds against eager fp32 on clive-train: |SRCC change| and mean absolute score change (0-100).
SRCC_BOUND = 0.005
SCORE_BOUND = 0.5
#: The measurement: one frame of this size (H, W) per candidate, timed this many times after a warm-up. A video
#: size, because the ranking changes with size: on a 384x384 frame auto timed ONNX Runtime at 101 ms and OpenVINO
#: at 108 ms for the built-in model and kept ONNX Runtime, which is 1.5x slower at 720p (README, Backends and speed).
FRAME_SIZE = (720, 1280)
REPEATS = 2

Path_ = tuple[str, str]  # (backend, precision)


def accuracy_ok(entry: dict | None) -> bool:
    """True when a card's precision entry was measured and lies inside both bounds."""
    if not isinstance(entry, dict):
        return False
    try:
        return abs(float(entry["srcc_change"])) <= SRCC_BOUND and float(entry["mean_abs_score_change"]) <= SCORE_BOUND
    except (KeyError, TypeError, ValueError):
        return False


def candidates(flags: set[str], precisions: dict, offered: Sequence[Path_], head: str | None = None
               ) -> tuple[list[Path_], list[str]]:
    """The paths auto may pick among ``offered`` (the registry's), and one reason per path left out;
    ``precisions`` is the card's measured accuracy per path ("backend precision"), each entry valid for the
    ``head`` it names only (the head in use: :func:`head_in_use`)."""
    paths: list[Path_] = []
    skipped = []
    for backend, precision in offered:
        entry = precisions.get(f"{backend} {precision}")
        if precision in NATIVE and not flags & NATIVE[precision]:
            skipped.append(f"{precision}: no {'/'.join(sorted(NATIVE[precision]))}")
        elif precision != "fp32" and entry is None:
            skipped.append(f"{backend} {precision}: no measured accuracy in the model card")
        elif precision != "fp32" and not accuracy_ok(entry):
            skipped.append(f"{backend} {precision}: accuracy out of bounds (SRCC change {entry.get('srcc_change')}, "
                           f"mean score change {entry.get('mean_abs_score_change')})")
        elif precision != "fp32" and entry.get("head") != head:
            measured = f"measured with head {entry['head']}" if entry.get("head") else "its entry names no head"
            skipped.append(f"{backend} {precision}: {measured}, not {head}")
        else:
            paths.append((backend, precision))
    return paths, list(dict.fromkeys(skipped))


def probe_frame(size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A deterministic frame with texture at several scales (smoothed noise), so no path gets an easy input."""
    rng = np.random.default_rng(0)
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.5 + 0.25 * np.sin(9 * x + 4 * y)[..., None] * np.array([1.0, 0.8, 0.6])
    return np.clip(255 * (base + 0.15 * rng.standard_normal((h, w, 3))), 0, 255).astype(np.uint8)


def measure(open_path: Callable[[Path_], Backend], paths: Sequence[Path_], repeats: int = REPEATS) -> dict[Path_, float]:
    """Best seconds for one :data:`FRAME_SIZE` frame (both scales) per path, timed round-robin after a warm-up;
    ``open_path`` opens a (backend, precision) on the CPU. A path this install cannot run is left out; when
    none runs, the first fp32 path's error is raised, since it names what is wrong (a bad weights file, say)."""
    frame = [probe_frame()]
    backends, failures = {}, []
    for path in paths:
        try:
            backends[path] = open_path(path)
            backends[path](frame)  # warm-up: allocations, first-run kernels
        except ContriqueError as exc:  # an fp32 path should run; a reduced one may lack a table or support
            (log.warning if path[1] == "fp32" else log.debug)("auto: %s %s left out: %s", *path, exc)
            backends.pop(path, None)
            failures.append((path[1] != "fp32", exc))
    if not backends and failures:
        raise min(failures, key=lambda f: f[0])[1]
    timed = round_robin({path: functools.partial(backend, frame) for path, backend in backends.items()}, repeats,
                        warmup=0)  # warmed up above, where a path that cannot run is left out
    return {path: t.best for path, t in timed.items()}


@dataclass
class Choice:
    backend: str
    precision: str
    reason: str
    timings: dict  # "backend precision" -> seconds
    key: dict

    def line(self) -> str:
        """What auto runs and why: the timings (when measured) and the paths left out."""
        return f"backend auto: {self.backend} {self.precision} ({self.reason})"

    def fastest_at(self, precision: str) -> Path_ | None:
        """The fastest measured path at ``precision`` (fitting and evaluation ask for fp32 features), or None."""
        if precision == self.precision:
            return self.backend, self.precision
        timed = {tuple(k.split(" ", 1)): t for k, t in self.timings.items() if k.endswith(f" {precision}")}
        return min(timed, key=timed.get) if timed else None


def cache_key(weights: str | os.PathLike | ResolvedModel, threads: int | None) -> dict:
    """What the choice depends on. The card's measured accuracy entries are part of it, so a new entry
    (``contrique-video precision-check --write-card``) is not hidden behind the choice made before it. Nothing
    here imports a runtime (torch alone costs a second of start-up)."""
    name, flags = read_cpuinfo()
    versions = {}
    for package in ("torch", "onnxruntime", "openvino"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    model = resolve_model(weights)
    accuracy = json.dumps(model.precisions, sort_keys=True)
    return {"cpu": name, "flags": sorted(flags & set(RELEVANT_FLAGS)), "threads": inference_threads(threads),
            "model": model.digest, "accuracy": hashlib.sha256(accuracy.encode()).hexdigest()[:16],
            "frame": list(FRAME_SIZE), **versions}


def head_in_use(model: ResolvedModel, head: str | None = None) -> str | None:
    """The name of the head scores are read with: ``head``, else the card's default head (a head file's own name
    for one beside the card), as a precision entry records it; None for a checkpoint without a card. A card
    without precision entries has nothing to compare it with, so its head file is not read: a new card's first
    head can be fit from features before that file exists."""
    default = model.card.default_head if model.card else None
    if head is not None or default is None or not model.precisions:
        return head
    if default.lower().endswith(".json"):
        from contrique_video.models.head import resolve_head

        return resolve_head(default).name
    return default


def measured_for(weights: str | os.PathLike | ResolvedModel, path: Path_, head: str | None = None) -> bool:
    """Whether auto may run ``path``: fp32, or a reduced precision whose card entry lies inside the bounds and
    was measured with the head in use."""
    model = resolve_model(weights)
    entry = model.precisions.get(" ".join(path))
    return path[1] == "fp32" or (accuracy_ok(entry) and entry.get("head") == head_in_use(model, head))


def cache_path(key: dict) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "auto" / f"{name}.json"


def read_cached(path: Path, key: dict) -> Choice | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data["key"] != key:
            raise ValueError("another machine's or model's key")
        return Choice(data["backend"], data["precision"], data["reason"], dict(data["timings"]), key)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("auto: cached choice %s is unreadable (%s); not using it", path, str(exc).splitlines()[0][:80])
        return None


def decide(paths: list[Path_], skipped: list[str], timer: Callable[[list[Path_]], dict[Path_, float]],
           key: dict, also_time: Sequence[Path_] = ()) -> Choice:
    """Time the candidates and pick the fastest; the reason names the runner-up's time and what was left out.
    ``also_time``: paths timed but never picked (native reduced precisions without an in-bounds entry), so that
    an explicit ``--precision`` gets the fastest path at that precision from the same measurement."""
    if len(paths) == 1 and not also_time:
        only = paths[0]
        return Choice(*only, "the only candidate" + (f"; {'; '.join(skipped)}" if skipped else ""), {}, key)
    times = timer([*paths, *also_time])  # a path missing from the result could not run here
    timings = {" ".join(p): t for p, t in times.items()}
    paths = [p for p in paths if p in times]
    if not paths:
        raise UnsupportedError("backend auto: no CPU path could run here; pass --backend explicitly")
    if len(paths) == 1:
        return Choice(*paths[0], "the only candidate that ran", timings, key)
    order = sorted(paths, key=lambda p: times[p])
    best, second = order[0], order[1]
    reason = (f"fastest on a {FRAME_SIZE[1]}x{FRAME_SIZE[0]} frame: {times[best] * 1e3:.0f} ms vs "
              f"{' '.join(second)} {times[second] * 1e3:.0f} ms")
    if skipped:
        reason += f"; {'; '.join(skipped)}"
    return Choice(*best, reason, timings, key)


def cached_choice(weights: str | os.PathLike, threads: int | None = None) -> Choice | None:
    """The measured CPU choice for these weights on this machine (``bench --autotune``), or None."""
    key = cache_key(weights, threads)
    return read_cached(cache_path(key), key)


def prefer(weights: str | os.PathLike, offered: Sequence[Path_], order: Sequence[Path_], head: str | None = None
           ) -> Choice:
    """auto's CPU choice without measuring: among ``offered``, the first candidate in ``order`` (paths it does not
    name come after it), an in-bounds reduced precision measured with the head in use (``head``, else the model's
    default) before fp32; the reason names what was left out."""
    _, flags = read_cpuinfo()
    rank = {p: i for i, p in enumerate(order)}
    ranked = sorted(offered, key=lambda p: rank.get(p, len(rank)))
    model = resolve_model(weights)
    paths, skipped = candidates(flags, model.precisions, ranked, head_in_use(model, head))
    if not paths:
        raise UnsupportedError("backend auto: no CPU path is installed here; pass --backend explicitly")
    best = next((p for p in paths if p[1] != "fp32"), paths[0])
    reason = "preferred on this CPU; `contrique-video bench --autotune` times the paths here instead"
    return Choice(*best, reason + (f"; {'; '.join(skipped)}" if skipped else ""), {}, {})


def choose(weights: str | os.PathLike, offered: Sequence[Path_], timer: Callable[[list[Path_]], dict[Path_, float]],
           threads: int | None = None, remeasure: bool = False) -> Choice:
    """The measured CPU choice among ``offered`` for these weights on this machine: from the cache (unless
    ``remeasure``), else timed (``timer``, e.g. :func:`measure`) and cached for auto to use."""
    key = cache_key(weights, threads)
    path = cache_path(key)
    cached = None if remeasure else read_cached(path, key)
    if cached is not None:
        return cached
    _, flags = read_cpuinfo()
    model = resolve_model(weights)
    paths, skipped = candidates(flags, model.precisions, offered, head_in_use(model))
    also_time = [p for p in offered if p not in paths and p[1] != "fp32" and native(p[1], flags)]
    choice = decide(paths, skipped, timer, key, also_time)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(asdict(choice), indent=1))
    return choice

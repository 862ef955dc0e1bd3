"""TensorRT engine cache: optimisation profiles, cache keys, sidecars; plain functions, testable without TensorRT.

Engines live in ``cache_dir()/engines/`` as ``<onnx digest>-<precision>-<key>.engine`` with a JSON sidecar. The
key hashes everything an engine is only valid for: GPU name and compute capability, TensorRT version, the ONNX
file's digest, precision, the profiles and this cache's layout version. An engine is used only when its sidecar
names exactly those and its bytes match the checksum in the sidecar, and TensorRT deserialises it; otherwise
it is rebuilt, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from contrique_video import __version__
from contrique_video.cache import cache_dir
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.files import atomic_write

log = logging.getLogger("contrique_video")

DEFAULT_MAX_BATCH = 8
CACHE_LAYOUT = 1  # bump when the engine file, sidecar or profile layout changes
T = TypeVar("T")


# --------------------------------------------------------------------------- profiles (no TensorRT needed)


@dataclass(frozen=True, order=True)
class Profile:
    """One optimisation profile: a fixed H x W, batch 1..max_batch (opt at max_batch, the usual full batch)."""

    height: int
    width: int
    max_batch: int

    def shapes(self) -> tuple[tuple[int, int, int, int], ...]:
        """(min, opt, max) input shapes, as ``IOptimizationProfile.set_shape`` takes them."""
        h, w, b = self.height, self.width, self.max_batch
        return (1, 3, h, w), (b, 3, h, w), (b, 3, h, w)

    def covers(self, shape: Sequence[int]) -> bool:
        n, c, h, w = shape
        return c == 3 and (h, w) == (self.height, self.width) and 1 <= n <= self.max_batch


def profiles_for(resolutions: Iterable[tuple[int, int]], max_batch: int = DEFAULT_MAX_BATCH) -> list[Profile]:
    """Profiles for frames of these (height, width) sizes: each size and its half scale, deduplicated, sorted."""
    if max_batch < 1:
        raise UnsupportedError(f"max_batch must be at least 1, got {max_batch}")
    sizes: set[tuple[int, int]] = set()
    for res in resolutions:
        h, w = (int(v) for v in res)
        if min(h, w) < 64:
            raise UnsupportedError(f"resolution {w}x{h} is too small to score (needs at least 64x64)")
        sizes.update({(h, w), (h // 2, w // 2)})
    if not sizes:
        raise UnsupportedError("an engine needs at least one resolution")
    return [Profile(h, w, max_batch) for h, w in sorted(sizes)]


# --------------------------------------------------------------------------- cache keys and sidecars


def engine_components(gpu: str, compute_capability: tuple[int, int], trt_version: str, model_digest: str,
                      precision: str, profiles: Sequence[Profile]) -> dict[str, Any]:
    """What an engine is valid for; a change in any of these makes a different engine."""
    return {
        "layout": CACHE_LAYOUT,
        "gpu": gpu,
        "compute_capability": f"{compute_capability[0]}.{compute_capability[1]}",
        "tensorrt": trt_version,
        "model": model_digest,
        "precision": precision,
        "profiles": [[p.height, p.width, p.max_batch] for p in sorted(profiles)],
    }


def engine_key(components: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the components' canonical JSON (stable across runs and dict order)."""
    text = json.dumps(components, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def engine_path(components: dict[str, Any], root: Path | None = None) -> Path:
    root = (root or cache_dir()) / "engines"
    return root / f"{components['model']}-{components['precision']}-{engine_key(components)}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_suffix(".json")


def sidecar_problem(engine: Path, components: dict[str, Any]) -> str | None:
    """Why the cached engine at ``engine`` must not be used for ``components``, or None when it may be tried.

    Checked before TensorRT sees the bytes: the sidecar must name the same components, and the engine file
    must have the size and SHA-256 the sidecar recorded (a truncated or overwritten file is caught here).
    """
    if not engine.is_file():
        return "no engine file"
    try:
        side = json.loads(sidecar_path(engine).read_text())
        recorded, size, digest = side["components"], int(side["bytes"]), str(side["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its sidecar {sidecar_path(engine).name} is missing or unreadable ({type(exc).__name__})"
    if recorded != components:
        fields = sorted(k for k in set(recorded) | set(components) if recorded.get(k) != components.get(k))
        return f"it was built for another {', '.join(fields)}"
    if engine.stat().st_size != size:
        return f"the engine file is {engine.stat().st_size} bytes, not the {size} it was written with"
    if _sha256(engine.read_bytes()) != digest:
        return "the engine file does not match its checksum"
    return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_engine(engine: Path, data: bytes, components: dict[str, Any]) -> None:
    """Write the engine, then its sidecar, each atomically: a crash between them leaves no sidecar, so a rebuild."""
    engine.parent.mkdir(parents=True, exist_ok=True)
    for path, payload in (
        (engine, data),
        (sidecar_path(engine), json.dumps({
            "key": engine_key(components), "components": components, "bytes": len(data), "sha256": _sha256(data),
            "contrique_video": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }, indent=1).encode()),
    ):
        atomic_write(path, payload)


def load_or_build(components: dict[str, Any], build: Callable[[], bytes], deserialize: Callable[[bytes], T | None],
                  root: Path | None = None) -> T:
    """The engine for ``components``: from the cache when its sidecar checks out and it deserialises, else
    built (``build``), stored and deserialised. A cached engine that fails either check is rebuilt with a
    warning, never used; a fresh build that will not deserialise is an error."""
    path = engine_path(components, root)
    problem = sidecar_problem(path, components)
    if problem is None:
        engine = deserialize(path.read_bytes())
        if engine is not None:
            log.info("TensorRT engine %s loaded from the cache", path.name)
            return engine
        problem = "TensorRT cannot deserialise it"
    if problem != "no engine file":
        log.warning("cached TensorRT engine %s: %s; rebuilding it", path, problem)
    data = build()
    engine = deserialize(data)
    if engine is None:
        raise ModelError(f"TensorRT built an engine for {components['model']} that it cannot load back")
    store_engine(path, data, components)
    return engine

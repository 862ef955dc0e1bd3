"""The ONNX files backends run, made from a model once and kept in :func:`contrique_video.cache.cache_dir`.

Files are named by the model's digest (:func:`contrique_video.models.card.model_digest`) and precision, and
record both in their metadata; a cached file that does not parse or names other weights is rebuilt, with a
warning, never used.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from contrique_video.backends.export import export_onnx, read_metadata
from contrique_video.backends.fp16 import cached_fp16
from contrique_video.backends.int8 import calibration_table, check_int8, quantize_int8
from contrique_video.cache import cache_dir, preparing
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.models import ResolvedModel, resolve_model

log = logging.getLogger("contrique_video")


def cached_export(weights: str | os.PathLike | ResolvedModel, precision: str = "fp32") -> Path:
    """The ONNX file for a checkpoint or card at fp32, fp16 (converted from the fp32 one) or int8 (quantised
    with the model's calibration table), exported once into the cache."""
    model = resolve_model(weights)
    if precision == "fp16":
        return cached_fp16(cached_export(model, "fp32"), model.label)
    digest = model.digest
    path = cache_dir() / "onnx" / f"{digest}-{precision}.onnx"
    if _usable(path, digest, precision):
        return path
    if precision == "fp32":
        with preparing(path):  # several processes may ask at once: one exports, the others wait for it
            if _usable(path, digest, precision, warn=False):
                return path
            start = time.perf_counter()
            export_onnx(model.load(), path, source=digest)
            log.info("prepared %s for ONNX Runtime in %.1f s (once per machine; kept in %s)", model.label,
                     time.perf_counter() - start, path.parent)
            return path
    if precision == "int8":
        fp32 = cached_export(model, "fp32")
        check_int8(fp32)
        table = calibration_table(model, digest)
        if not table.is_file():
            raise UnsupportedError(
                f"int8 for {model.path.name} needs a calibration table: run `contrique-video export-onnx --weights "
                f"{model.path} --precision int8 --calibrate MEDIA...` once"
            )
        log.info("quantising %s to int8 (once; kept in %s)", model.label, path.parent)
        return quantize_int8(fp32, path, table)
    raise UnsupportedError(f"no {precision} ONNX export; available: fp32, fp16, int8")


def _usable(path: Path, digest: str, precision: str, warn: bool = True) -> bool:
    """Whether the cached export at ``path`` was made from these weights at this precision."""
    if not path.is_file():
        return False
    try:
        meta = read_metadata(path)
        if meta.get("source") == digest and meta.get("precision") == precision:
            return True
        if warn:
            log.warning("%s was made from other weights or at another precision: rebuilding it", path)
    except ModelError as exc:
        if warn:
            log.warning("%s: rebuilding it", exc)
    return False


__all__ = ["cached_export"]

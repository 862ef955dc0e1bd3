"""Strict plain-JSON helpers for head files: numbers that must be finite, no NaN/Infinity tokens, no duplicate
keys, and values reduced to JSON types, so a head file can only ever hold numbers and strings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from contrique_video.errors import ModelError


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def finite_float(value: Any, what: str) -> float:
    if not is_number(value):
        raise ModelError(f"{what} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:
        raise ModelError(f"{what} is too large to be a float64") from None
    if not math.isfinite(out):
        raise ModelError(f"{what} must be finite, got {out}")
    return out


def plain_json(value: Any, where: str, depth: int = 0) -> Any:
    """A copy of ``value`` made of JSON types only: numpy scalars/arrays become Python numbers/lists and
    non-finite floats (a NaN correlation from a degenerate split, say) become None, which JSON can hold."""
    if depth > 64:
        raise ModelError(f"{where} is nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        out = float(value)
        return out if math.isfinite(out) else None
    if isinstance(value, np.ndarray):
        return plain_json(value.tolist(), where, depth + 1)
    if isinstance(value, (list, tuple)):
        return [plain_json(v, where, depth + 1) for v in value]
    if isinstance(value, dict):
        out_d = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ModelError(f"{where} has a non-string key {k!r}")
            out_d[k] = plain_json(v, f"{where}.{k}", depth + 1)
        return out_d
    raise ModelError(f"{where} holds a {type(value).__name__}, which is not plain JSON")


def reject_constant(token: str) -> float:
    raise ModelError(f"non-finite number {token} is not allowed")


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ModelError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_limited(path: Path, what: str, limit: int, too_large_for: str) -> bytes:
    """The bytes of a small file (a head, a regressor) with one-line errors; refuses files over ``limit``
    before reading them, so a wrong path cannot fill memory."""
    if not path.exists():
        raise ModelError(f"{what} file not found: {path}")
    if not path.is_file():
        raise ModelError(f"{what} path is not a file: {path}")
    try:
        size = path.stat().st_size
        if size > limit:
            raise ModelError(f"{what} file {path} is {size} bytes, too large to be {too_large_for}")
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None

"""Convert the official CONTRIQUE linear regressors (pickled sklearn ``Ridge``) into JSON heads.

The official repository writes its regressors with plain ``pickle.dump(reg, open(..., 'wb'))``
(``train_regressor.py``) and reads them with ``pickle.load`` (``demo_score.py``); they were made with
scikit-learn 1.0.1 / numpy 1.16 (``requirements.txt``). Unpickling such a file normally runs whatever
callables it names, so this module never does that: a restricted ``pickle.Unpickler`` resolves only the
handful of names a Ridge's state needs (numpy array / scalar / dtype rebuilders, ``copyreg`` and
``_codecs`` helpers for old protocols), wrapped so they accept only the arguments such a file uses. The
``Ridge`` class itself is replaced by an inert stand-in that only records its state dict; sklearn is
never imported or called. Anything else in the file is refused with a ModelError.

Reference intercepts of the official files, to check a conversion: CLIVE 53.48949, Koniq 37.20687,
LIVE 50.48668, CSIQ 0.486465.
"""

from __future__ import annotations

import _compat_pickle
import hashlib
import io
import logging
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from contrique_video.errors import ModelError
from contrique_video.models.head import LinearHead
from contrique_video.models.plain_json import read_limited

log = logging.getLogger("contrique_video")

OFFICIAL_INTERCEPTS: dict[str, float] = {"clive": 53.48949, "koniq": 37.20687, "live": 50.48668, "csiq": 0.486465}

# stem (lower case) -> (name, trained_on, scale, range, higher_is_better)
KNOWN_REGRESSORS: dict[str, tuple[str, str, str, tuple[float, float], bool]] = {
    "clive": ("clive", "CLIVE (LIVE In the Wild)", "MOS", (0.0, 100.0), True),
    "koniq": ("koniq", "KonIQ-10k", "MOS", (0.0, 100.0), True),
    "live": ("live", "LIVE IQA", "DMOS", (0.0, 100.0), False),
    "csiq": ("csiq", "CSIQ", "DMOS", (0.0, 1.0), False),
}

_MAX_PICKLE_BYTES = 256 * 1024 * 1024
# gzip, xz, bz2, zstd, lz4 frame, old joblib zlib: what joblib.dump(compress=...) writes.
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\xfd7zXZ", b"BZh", b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18", b"ZF")

# Where different scikit-learn versions define Ridge (pickle records the defining module).
_RIDGE_PATHS = {
    ("sklearn.linear_model._ridge", "Ridge"),
    ("sklearn.linear_model.ridge", "Ridge"),  # scikit-learn < 0.22
    ("sklearn.linear_model", "Ridge"),
}
_NUMPY_MODULES = {"numpy.core.multiarray", "numpy._core.multiarray"}
_NUMPY_NUMERIC = {"numpy.core.numeric", "numpy._core.numeric"}

# The real numpy rebuild functions, taken from numpy itself so the numpy 1.x / 2.x module rename
# (numpy.core -> numpy._core) does not matter.
_np_reconstruct = np.zeros(1).__reduce__()[0]
_np_scalar = np.float64(0.0).__reduce__()[0]
_np_frombuffer = np.zeros(1).__reduce_ex__(5)[0]


class _Refused(pickle.UnpicklingError):
    """The pickle uses an allowed name in a way a plain Ridge pickle never does."""


class _RidgeState:
    """Inert stand-in for sklearn's Ridge: pickle's BUILD hands it the state dict, nothing more."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise _Refused(f"Ridge state is a {type(state).__name__}, not a dict")
        self.state = state


class _Guarded:
    """A callable handed out by the restricted unpickler.

    Defining ``__setstate__`` stops a crafted BUILD opcode from writing attributes onto it (pickle would
    otherwise update a plain function's ``__dict__`` or set its ``__defaults__``, altering this module).
    """

    __slots__ = ("_fn", "_label")

    def __init__(self, fn: Any, label: str):
        self._fn = fn
        self._label = label

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"pickle tries to modify {self._label}")

    def __repr__(self) -> str:
        return f"<restricted {self._label}>"


def _never_call(*args: Any) -> Any:
    raise _Refused("pickle calls numpy.ndarray directly")


# numpy.ndarray only ever appears as the first argument of _reconstruct; hand out a marker instead of
# the class so that the pickle cannot call or subclass-instantiate it with arbitrary arguments.
_NDARRAY = _Guarded(_never_call, "numpy.ndarray")


def _reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise _Refused("numpy _reconstruct called for something other than numpy.ndarray")
    return _np_reconstruct(np.ndarray, shape, dtype_code)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, *rest: Any) -> np.ndarray:
    if not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)) or not isinstance(dtype, np.dtype):
        raise _Refused("numpy _frombuffer called with unexpected argument types")
    if dtype.hasobject:
        raise _Refused("numpy _frombuffer called with an object dtype")
    return np.array(_np_frombuffer(buf, dtype, shape, order, *rest), copy=True)


def _scalar(dtype: Any, *args: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Refused("numpy scalar called with an unexpected dtype")
    return _np_scalar(dtype, *args)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocols 0-2 store bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode called with unexpected arguments")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # Protocols 0-1 rebuild plain objects via copyreg._reconstructor(cls, object, None).
    if cls is not _RidgeState or base is not object or state is not None:
        raise _Refused("copyreg._reconstructor called with unexpected arguments")
    return object.__new__(_RidgeState)


_ALLOWED: dict[tuple[str, str], Any] = {}
for _mod in _NUMPY_MODULES:
    _ALLOWED[(_mod, "_reconstruct")] = _Guarded(_reconstruct, f"{_mod}._reconstruct")
    _ALLOWED[(_mod, "scalar")] = _Guarded(_scalar, f"{_mod}.scalar")
for _mod in _NUMPY_NUMERIC:
    _ALLOWED[(_mod, "_frombuffer")] = _Guarded(_frombuffer, f"{_mod}._frombuffer")
_ALLOWED[("numpy", "ndarray")] = _NDARRAY
_ALLOWED[("numpy", "dtype")] = np.dtype  # a C type: pickle can neither set attributes on it nor subclass it
for _mod in ("_codecs", "codecs"):
    _ALLOWED[(_mod, "encode")] = _Guarded(_encode, f"{_mod}.encode")
_ALLOWED[("copyreg", "_reconstructor")] = _Guarded(_reconstructor, "copyreg._reconstructor")
_ALLOWED[("builtins", "object")] = object
for _key in _RIDGE_PATHS:
    _ALLOWED[_key] = _RidgeState


def _clean(text: Any, limit: int = 120) -> str:
    """Make a name taken from an untrusted file safe for a one-line message."""
    s = str(text).encode("unicode_escape", "backslashreplace").decode("ascii")
    return s if len(s) <= limit else s[: limit - 3] + "..."


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: io.BytesIO, source: str):
        super().__init__(fh)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        # Protocols 0-2 written with fix_imports use Python 2 names (copy_reg, __builtin__): map them
        # the way pickle itself does, without importing anything.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        target = _ALLOWED.get((module, name))
        if target is not None:
            return target
        hint = ""
        if module.split(".")[0] == "joblib" or ".joblib." in module or module.endswith(".joblib"):
            hint = " (joblib-format files are not supported; the official CONTRIQUE regressors are plain pickle)"
        elif module.split(".")[0] == "sklearn":
            hint = " (only a single sklearn Ridge can be imported)"
        raise ModelError(f"refusing to load {self._source}: pickle asks for {_clean(module)}.{_clean(name)}{hint}")

    def persistent_load(self, pid: Any) -> Any:
        raise ModelError(f"refusing to load {self._source}: pickle uses a persistent id")


def _read_ridge_state(path: Path) -> tuple[dict, bytes, int | None]:
    raw = read_limited(path, "regressor", _MAX_PICKLE_BYTES, "a linear regressor")
    if not raw:
        raise ModelError(f"regressor file {path} is empty")
    if raw[:1] != b"\x80" and (raw.startswith(_COMPRESSED_MAGIC) or (len(raw) > 1 and raw[:1] == b"x" and raw[1:2] in b"\x01\x5e\x9c\xda")):
        raise ModelError(f"regressor file {path} is compressed (joblib?); only plain pickle files are supported")
    protocol = raw[1] if raw[:1] == b"\x80" and len(raw) > 1 else None

    fh = io.BytesIO(raw)
    try:
        obj = _RestrictedUnpickler(fh, str(path)).load()
    except ModelError:
        raise
    except _Refused as exc:
        raise ModelError(f"refusing to load {path}: {_clean(exc, 200)}") from None
    except RecursionError:
        raise ModelError(f"cannot read {path} as a pickle: nesting too deep") from None
    except Exception as exc:  # malformed data: truncated, wrong opcodes, bad arguments ...
        detail = _clean(str(exc).splitlines()[0] if str(exc) else "", 160)
        raise ModelError(
            f"cannot read {path} as a sklearn Ridge pickle: {type(exc).__name__}" + (f": {detail}" if detail else "")
        ) from None
    trailing = len(raw) - fh.tell()
    if trailing:
        raise ModelError(f"refusing to load {path}: {trailing} unexpected bytes after the pickle (joblib format?)")
    if not isinstance(obj, _RidgeState):
        raise ModelError(f"refusing to load {path}: it holds a {type(obj).__name__}, not a sklearn Ridge")
    if not hasattr(obj, "state"):
        raise ModelError(f"refusing to load {path}: the Ridge in it has no state")
    return obj.state, raw, protocol


def _as_float(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def _ridge_arrays(state: dict, path: Path) -> tuple[np.ndarray, float]:
    missing = [k for k in ("coef_", "intercept_") if k not in state]
    if missing:
        raise ModelError(f"refusing to load {path}: the Ridge has no {' or '.join(missing)} (was it fitted?)")
    coef = state["coef_"]
    if not isinstance(coef, np.ndarray) or coef.dtype.kind != "f":
        what = coef.dtype if isinstance(coef, np.ndarray) else type(coef).__name__
        raise ModelError(f"refusing to load {path}: coef_ is {what}, expected a float array")
    if coef.ndim == 2 and coef.shape[0] == 1:
        coef = coef[0]
    if coef.ndim != 1:
        raise ModelError(f"refusing to load {path}: coef_ has shape {coef.shape}; only single-output Ridge (D,) or (1, D) is supported")
    if coef.size == 0:
        raise ModelError(f"refusing to load {path}: coef_ is empty")
    if not np.all(np.isfinite(coef)):
        raise ModelError(f"refusing to load {path}: coef_ contains non-finite values")

    intercept = state["intercept_"]
    if isinstance(intercept, np.ndarray):
        if intercept.dtype.kind not in "fiu" or intercept.size != 1:
            raise ModelError(f"refusing to load {path}: intercept_ has shape {intercept.shape} and dtype {intercept.dtype}, expected one number")
        value = float(intercept.reshape(-1)[0])
    else:
        value = _as_float(intercept)
        if value is None:
            raise ModelError(f"refusing to load {path}: intercept_ is a {type(intercept).__name__}, expected a number")
    if not math.isfinite(value):
        raise ModelError(f"refusing to load {path}: intercept_ is not finite ({value})")
    return np.array(coef, dtype=np.float64, copy=True), value


def import_ridge(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    features: str = "contrique-official",
    trained_on: str | None = None,
    scale: str | None = None,
    range: tuple[float, float] | None = None,  # noqa: A002 - matches LinearHead.range
    higher_is_better: bool | None = None,
) -> LinearHead:
    """Turn a pickled sklearn Ridge (e.g. the official ``CLIVE.save``) into a LinearHead, safely.

    Metadata not given is taken from the file stem (clive, koniq, live, csiq; case-insensitive).
    """
    path = Path(path)
    state, raw, protocol = _read_ridge_state(path)
    weights, intercept = _ridge_arrays(state, path)

    stem = path.stem
    known = KNOWN_REGRESSORS.get(stem.lower())
    if known is not None:
        k_name, k_trained, k_scale, k_range, k_hib = known
    else:
        defaulted = [
            field_name
            for field_name, value in (
                ("trained_on", trained_on),
                ("scale", scale),
                ("range", range),
                ("higher_is_better", higher_is_better),
            )
            if value is None
        ]
        if defaulted:
            log.warning(
                "%s: unknown regressor name %r; defaulting %s (scale 'unknown', higher is better, range 0-100); "
                "pass them explicitly to import_ridge",
                path,
                stem,
                ", ".join(defaulted),
            )
        k_name, k_trained, k_scale, k_range, k_hib = stem, f"unknown (imported from {path.name})", "unknown", (0.0, 100.0), True

    extra: dict[str, Any] = {
        "source": "sklearn Ridge pickle",
        "source_file": path.name,
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "pickle_protocol": protocol,
        "sklearn_version": str(state["_sklearn_version"]) if isinstance(state.get("_sklearn_version"), str) else None,
        "n_features_in": int(weights.shape[0]),
    }
    alpha = _as_float(state.get("alpha"))
    if alpha is not None and math.isfinite(alpha):
        extra["alpha"] = alpha
    if isinstance(state.get("fit_intercept"), bool):
        extra["fit_intercept"] = state["fit_intercept"]
    if known is not None:
        # True when this looks like the file from the official repository (intercepts quoted to ~7 digits).
        extra["matches_official_intercept"] = math.isclose(intercept, OFFICIAL_INTERCEPTS[k_name], rel_tol=2e-6)

    try:
        return LinearHead(
            weights=weights,
            intercept=intercept,
            name=name if name is not None else k_name,
            features=features,
            trained_on=trained_on if trained_on is not None else k_trained,
            scale=scale if scale is not None else k_scale,
            range=range if range is not None else k_range,
            higher_is_better=higher_is_better if higher_is_better is not None else k_hib,
            extra=extra,
        )
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None

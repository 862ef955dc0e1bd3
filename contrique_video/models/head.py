"""Linear quality heads stored as plain JSON (never pickle).

A head maps a feature vector ``x`` (D values, e.g. the 4096 CONTRIQUE features: 2048 at full scale
followed by 2048 at half scale) to a raw linear value ``x @ weights + intercept`` (:meth:`LinearHead.predict_raw`)
and, when the head has a mapping, maps that monotonically into its range (:meth:`LinearHead.predict`). The
file holds only numbers and strings, so loading one can never run code. Layout::

    {"format": "contrique-video-head", "version": 1 or 2, "name": ..., "features": ..., "layout": ..., "trained_on": ...,
     "scale": ..., "range": [lo, hi], "higher_is_better": ..., "intercept": ..., "weights": [...],
     "extra": {...},
     "mapping": {"kind": "logistic", "params": [a, c, m, s]},   # version 2, optional
     "fit": {...}}                                               # version 2, optional: how it was fit

``layout`` is the feature layout the head was fit on (models/layouts.py), which a model must give for the head
to score it; a file without one (written before heads recorded it) gets it from ``features``
(:func:`contrique_video.models.layout_of`). ``mapping`` absent or null means the identity (every version 1 head). The logistic is
``lo + (hi - lo) * (a + (c - a) / (1 + exp(-(raw - m) / s)))`` with ``0 <= a < c <= 1`` and ``s > 0``: strictly
increasing, so it keeps the order of raw values, and inside [lo, hi] by construction. A head without
``mapping`` and ``fit`` is written as version 1, so older builds keep reading it.

Floats are written with ``repr`` precision, so ``save`` then ``load`` gives bit-identical weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contrique_video.errors import ModelError
from contrique_video.files import atomic_write
from contrique_video.models.layouts import has_trained_branch
from contrique_video.models.plain_json import (
    finite_float,
    no_duplicate_keys,
    plain_json,
    read_limited,
    reject_constant,
)

FORMAT_TAG = "contrique-video-head"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MAPPINGS = ("logistic",)
HEADS_DIR = Path(__file__).resolve().parents[1] / "assets" / "heads"

# Heads are a few hundred kB at most; anything far bigger is not a head.
_MAX_HEAD_BYTES = 64 * 1024 * 1024
_PICKLE_SUFFIXES = {".save", ".pkl", ".pickle", ".joblib", ".sav"}


@dataclass(eq=False)
class LinearHead:
    """A linear regressor on a fixed feature extractor: ``score = X @ weights + intercept``."""

    weights: np.ndarray  # (D,) float64
    intercept: float
    name: str  # e.g. "clive"
    features: str  # id of the model it was fit on; informational
    trained_on: str  # e.g. "CLIVE (LIVE In the Wild), 930 images"
    scale: str  # e.g. "MOS" or "DMOS"
    range: tuple[float, float]  # e.g. (0.0, 100.0)
    higher_is_better: bool
    extra: dict = field(default_factory=dict)  # free JSON-serialisable metadata
    mapping: dict | None = None  # {"kind": "logistic", "params": [a, c, m, s]}; None = identity
    fit: dict | None = None  # how the head was fit (data, pair counts, loss weights); plain JSON
    layout: str | None = None  # feature layout it was fit on; None: from ``features``, else unknown (width only)

    def __post_init__(self) -> None:
        label = f"head {self.name!r}" if isinstance(self.name, str) else "head"
        for attr in ("name", "features", "trained_on", "scale"):
            if not isinstance(getattr(self, attr), str):
                raise ModelError(f"{label}: {attr} must be a string, got {type(getattr(self, attr)).__name__}")
        if not self.name.strip():
            raise ModelError("head name must not be empty")
        if self.layout is None:
            from contrique_video.models import layout_of

            self.layout = layout_of(self.features)
        elif not isinstance(self.layout, str):
            raise ModelError(f"{label}: layout must be a string, got {type(self.layout).__name__}")

        try:
            w = np.array(self.weights, dtype=np.float64, copy=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ModelError(f"{label}: weights are not numeric ({exc})") from None
        if w.ndim != 1:
            raise ModelError(f"{label}: weights must be one-dimensional, got shape {w.shape}")
        if w.size == 0:
            raise ModelError(f"{label}: weights are empty")
        bad = np.flatnonzero(~np.isfinite(w))
        if bad.size:
            raise ModelError(f"{label}: weight {int(bad[0])} is not finite ({w[bad[0]]})")
        self.weights = w

        self.intercept = finite_float(self.intercept, f"{label}: intercept")

        rng = self.range
        if not isinstance(rng, (tuple, list)) or len(rng) != 2:
            raise ModelError(f"{label}: range must be a pair [lo, hi], got {rng!r}")
        lo = finite_float(rng[0], f"{label}: range low end")
        hi = finite_float(rng[1], f"{label}: range high end")
        if not lo < hi:
            raise ModelError(f"{label}: range low end {lo} is not below the high end {hi}")
        self.range = (lo, hi)

        if not isinstance(self.higher_is_better, (bool, np.bool_)):
            raise ModelError(f"{label}: higher_is_better must be true or false, got {self.higher_is_better!r}")
        self.higher_is_better = bool(self.higher_is_better)

        if not isinstance(self.extra, dict):
            raise ModelError(f"{label}: extra must be a dict, got {type(self.extra).__name__}")
        self.extra = plain_json(self.extra, f"{label}: extra")
        self.mapping = _check_mapping(self.mapping, label)
        if self.fit is not None:
            if not isinstance(self.fit, dict):
                raise ModelError(f"{label}: fit must be an object, got {type(self.fit).__name__}")
            self.fit = plain_json(self.fit, f"{label}: fit")

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    def check_fits(self, layout: str | None, dim: int, model_id: str | None = None) -> None:
        """Refuse a model whose features this head cannot read: another width, another recorded layout, or, for a
        layout with a trained quality branch, another model (two branches of one layout give unrelated features)."""
        if self.dim != dim:
            raise ModelError(f"head {self.name!r} expects {self.dim} features but the model gives {dim}")
        if self.layout and layout and self.layout != layout:
            raise ModelError(f"head {self.name!r} was fit on {self.layout} features but the model gives {layout}; "
                             "use a head fit on this layout")
        fit_on = self.features.split("+")[0]
        if model_id and layout and has_trained_branch(layout) and fit_on and fit_on != model_id:
            raise ModelError(f"head {self.name!r} was fit on the features of {fit_on}, not of {model_id} (their "
                             "trained quality branches differ): use a head fit on this model (`contrique-video fit --weights`)")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores for X of shape (N, D) or (D,): the raw linear value through the head's mapping, shape (N,).

        With a logistic mapping every score lies in ``range``; without one it is the raw value."""
        return self.map_raw(self.predict_raw(X))

    def map_raw(self, raw: np.ndarray) -> np.ndarray:
        """The head's monotone mapping applied to raw linear values (identity when the head has none)."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.mapping is None:
            return raw
        a, c, m, s = self.mapping["params"]
        lo, hi = self.range
        t = np.clip((raw - m) / s, -500.0, 500.0)
        return np.clip(lo + (hi - lo) * (a + (c - a) / (1.0 + np.exp(-t))), lo, hi)

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Raw linear values ``X @ weights + intercept`` for X of shape (N, D) or (D,); shape (N,) float64."""
        try:
            x = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"head {self.name!r}: features are not numeric ({exc})") from None
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ModelError(f"head {self.name!r}: features must have shape (N, {self.dim}) or ({self.dim},), got {x.shape}")
        if x.shape[1] != self.dim:
            raise ModelError(
                f"head {self.name!r} expects {self.dim} features per sample but got {x.shape[1]} "
                f"(head fit on {self.features!r})"
            )
        return x @ self.weights + self.intercept

    def to_dict(self) -> dict:
        doc = {
            "format": FORMAT_TAG,
            "version": 1 if self.mapping is None and self.fit is None else FORMAT_VERSION,
            "name": self.name,
            "features": self.features,
            **({"layout": self.layout} if self.layout else {}),
            "trained_on": self.trained_on,
            "scale": self.scale,
            "range": [self.range[0], self.range[1]],
            "higher_is_better": self.higher_is_better,
            "intercept": self.intercept,
            "weights": self.weights.tolist(),
            "extra": self.extra,
        }
        if doc["version"] >= 2:
            doc["mapping"] = self.mapping
            doc["fit"] = self.fit
        return doc

    def save(self, path: str | os.PathLike) -> None:
        """Write the head as JSON, atomically."""
        path = Path(path)
        try:
            text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise ModelError(f"head {self.name!r} cannot be written as JSON ({exc})") from None
        parent = path.parent
        if not parent.is_dir():
            raise ModelError(f"cannot write head to {path}: directory {parent} does not exist")
        try:
            atomic_write(path, text)
        except OSError as exc:
            raise ModelError(f"cannot write head to {path}: {exc.strerror or exc}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LinearHead":
        """Read and validate a head file; any problem is a one-line ModelError naming the file."""
        path = Path(path)
        raw = read_limited(path, "head", _MAX_HEAD_BYTES, "a linear head")
        if not raw.strip():
            raise ModelError(f"head file {path} is empty")
        if raw[:1] == b"\x80" or path.suffix.lower() in _PICKLE_SUFFIXES:
            raise ModelError(
                f"{path} is not a JSON head (it looks like a pickled regressor); "
                "convert it with contrique_video.training.ridge_import.import_ridge"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError(f"head file {path} is not UTF-8 text") from None
        try:
            doc = json.loads(text, parse_constant=reject_constant, object_pairs_hook=no_duplicate_keys)
        except ModelError as exc:
            raise ModelError(f"head file {path}: {exc}") from None
        except (ValueError, RecursionError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(f"head file {path} is not valid JSON: {first}") from None
        try:
            return cls.from_dict(doc)
        except ModelError as exc:
            raise ModelError(f"head file {path}: {exc}") from None

    @classmethod
    def from_dict(cls, doc: Any) -> "LinearHead":
        """Build a head from the parsed JSON document, checking every field's type."""
        if not isinstance(doc, dict):
            raise ModelError(f"expected a JSON object, got {type(doc).__name__}")
        fmt = doc.get("format")
        if fmt != FORMAT_TAG:
            raise ModelError(f"format tag is {fmt!r}, expected {FORMAT_TAG!r}")
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ModelError(f"version must be an integer, got {version!r}")
        if version not in READABLE_VERSIONS:
            raise ModelError(
                f"unsupported head format version {version} (this build reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))})"
            )
        if version == 1 and ("mapping" in doc or "fit" in doc):
            raise ModelError("a version 1 head cannot have 'mapping' or 'fit' (those need version 2)")
        fit = doc.get("fit")
        if fit is not None and not isinstance(fit, dict):
            raise ModelError(f"fit must be an object or null, got {type(fit).__name__}")
        required = ("name", "features", "trained_on", "scale", "range", "higher_is_better", "intercept", "weights", "extra")
        missing = [k for k in required if k not in doc]
        if missing:
            raise ModelError(f"missing key(s): {', '.join(missing)}")
        for key in ("name", "features", "trained_on", "scale"):
            if not isinstance(doc[key], str):
                raise ModelError(f"{key} must be a string, got {type(doc[key]).__name__}")
        if not isinstance(doc.get("layout", ""), str):
            raise ModelError(f"layout must be a string, got {type(doc['layout']).__name__}")
        rng = doc["range"]
        if not isinstance(rng, list) or len(rng) != 2:
            raise ModelError(f"range must be a list [lo, hi], got {rng!r}")
        if not isinstance(doc["higher_is_better"], bool):
            raise ModelError(f"higher_is_better must be true or false, got {doc['higher_is_better']!r}")
        weights = doc["weights"]
        if not isinstance(weights, list):
            raise ModelError(f"weights must be a list of numbers, got {type(weights).__name__}")
        if not weights:
            raise ModelError("weights list is empty")
        for i, value in enumerate(weights):
            finite_float(value, f"weight {i}")
        if not isinstance(doc["extra"], dict):
            raise ModelError(f"extra must be an object, got {type(doc['extra']).__name__}")
        n_in = doc["extra"].get("n_features_in")
        if isinstance(n_in, int) and not isinstance(n_in, bool) and n_in != len(weights):
            raise ModelError(f"has {len(weights)} weights but extra.n_features_in says {n_in}")
        return cls(
            weights=np.array([float(v) for v in weights], dtype=np.float64),
            intercept=finite_float(doc["intercept"], "intercept"),
            name=doc["name"],
            features=doc["features"],
            trained_on=doc["trained_on"],
            scale=doc["scale"],
            range=(rng[0], rng[1]),
            higher_is_better=doc["higher_is_better"],
            extra=doc["extra"],
            mapping=doc.get("mapping"),
            fit=fit,
            layout=doc.get("layout"),
        )


def _check_mapping(mapping: Any, label: str) -> dict | None:
    """None (identity) or a validated increasing logistic ``{"kind": "logistic", "params": [a, c, m, s]}``."""
    if mapping is None:
        return None
    if not isinstance(mapping, dict):
        raise ModelError(f"{label}: mapping must be an object or null, got {type(mapping).__name__}")
    kind = mapping.get("kind")
    if kind not in MAPPINGS:
        raise ModelError(f"{label}: unknown mapping kind {kind!r}; known: {', '.join(MAPPINGS)}")
    extra_keys = sorted(set(mapping) - {"kind", "params"})
    if extra_keys:
        raise ModelError(f"{label}: mapping has unknown key(s): {', '.join(extra_keys)}")
    params = mapping.get("params")
    if not isinstance(params, (list, tuple)) or len(params) != 4:
        raise ModelError(f"{label}: logistic mapping needs params [a, c, m, s], got {params!r}")
    a, c, m, s = (finite_float(v, f"{label}: mapping param {n}") for v, n in zip(params, "acms"))
    if not 0.0 <= a < c <= 1.0:
        raise ModelError(f"{label}: logistic mapping needs 0 <= a < c <= 1 (got a={a}, c={c}), else it leaves the range or falls")
    if not s > 0:
        raise ModelError(f"{label}: logistic mapping needs a positive scale s, got {s}")
    return {"kind": kind, "params": [a, c, m, s]}


def builtin_heads() -> dict[str, Path]:
    """Heads shipped with the package: name (file stem) -> path, from ``assets/heads/*.json``."""
    if not HEADS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(HEADS_DIR.glob("*.json")) if p.is_file()}


def resolve_head(name_or_path: str | os.PathLike) -> LinearHead:
    """Load a head given a path to a ``.json`` file or the name of a builtin head."""
    text = os.fspath(name_or_path)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if not text.strip():
        raise ModelError("no head given: pass a builtin head name or a path to a .json head")
    heads = builtin_heads()
    separators = [s for s in (os.sep, os.altsep, "/") if s]
    looks_like_path = isinstance(name_or_path, os.PathLike) or text.lower().endswith(".json") or any(
        s in text for s in separators
    )
    if not looks_like_path:
        if text in heads:
            return LinearHead.load(heads[text])
        by_lower = {k.lower(): v for k, v in heads.items()}
        if text.lower() in by_lower:
            return LinearHead.load(by_lower[text.lower()])
        if not Path(text).is_file():
            names = ", ".join(sorted(heads)) or "none installed"
            raise ModelError(f"unknown head {text!r}; builtin heads: {names}; or pass a path to a .json head file")
    path = Path(text)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ModelError(
            f"{path} is a pickled regressor, not a JSON head; convert it with contrique_video.training.ridge_import.import_ridge"
        )
    return LinearHead.load(path)

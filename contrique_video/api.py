"""The Python API the CLI is built on: source -> sampler -> encoder backend -> pooling -> head.

    >>> import contrique_video as cv
    >>> result = cv.score("input.mp4")            # built-in model and head
    >>> result.score, result.pooled["p5"], result.frames.head()
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .backend import TorchBackend
from .errors import ModelError
from .head import LinearHead, builtin_heads, resolve_head
from .model import Contrique, load_weights
from .pooling import RunningMean, score_stats
from .sampler import Sampling
from .source import Frame, open_source

log = logging.getLogger("contrique_video")
BUILTIN_MODEL_ID = "builtin-v1"
DEFAULT_HEAD = "clive"
FRAME_COLUMNS = ["frame", "pts_time", "score"]


def builtin_weights() -> Path | None:
    path = Path(str(resources.files("contrique_video") / "assets" / "builtin.pt"))
    return path if path.is_file() else None


@dataclass
class VideoScore:
    """One input's result. ``frames`` has one row per sampled frame: frame, pts_time, score."""

    file: str
    score: float
    pooled: dict
    frames: pd.DataFrame
    model: str
    head: str
    scale: str
    higher_is_better: bool
    sampling: str
    feature: np.ndarray = field(repr=False)

    @property
    def frames_scored(self) -> int:
        return len(self.frames)

    def record(self) -> dict:
        """The JSON record (stable keys) printed by ``score --format json``."""
        return {
            "file": self.file,
            "score": self.score,
            "pooled": self.pooled,
            "frames_scored": self.frames_scored,
            "model": self.model,
            "head": self.head,
            "scale": self.scale,
            "higher_is_better": self.higher_is_better,
            "sampling": self.sampling,
        }


@dataclass
class FrameFeatures:
    """Per-frame features of one input, as written by ``contrique-video features``."""

    file: str
    frame: np.ndarray
    pts_time: np.ndarray
    features: np.ndarray


class Scorer:
    """Loads a model and a head once, then scores any number of inputs.

    ``weights=None`` uses the built-in model; ``head=None`` uses the built-in head for it.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        head: str | os.PathLike | LinearHead | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 4,
        threads: int | None = None,
    ):
        if threads:
            torch.set_num_threads(threads)
        if weights is None:
            path = builtin_weights()
            if path is None:
                raise ModelError(
                    "this install has no built-in model; pass --weights PATH (e.g. the official "
                    "CONTRIQUE_checkpoint25.tar) and --head NAME|PATH (see `contrique-video import-head`)"
                )
            self.model_id = BUILTIN_MODEL_ID
        else:
            path = Path(weights)
            self.model_id = f"weights:{path.name}"
        model: Contrique = load_weights(path)
        self.backend = TorchBackend(model, device=device, precision=precision)
        self.batch_size = max(1, int(batch_size))
        self.head = self._head(head)

    def _head(self, head: str | os.PathLike | LinearHead | None) -> LinearHead | None:
        if head is None:
            if self.model_id != BUILTIN_MODEL_ID:
                return None  # features work without a head; score() asks for one
            head = DEFAULT_HEAD
        h = head if isinstance(head, LinearHead) else resolve_head(str(head))
        if h.dim != self.backend.feature_dim:
            raise ModelError(f"head {h.name!r} expects {h.dim} features but the model gives {self.backend.feature_dim}")
        builtin_model = self.model_id == BUILTIN_MODEL_ID
        if builtin_model != (h.features == BUILTIN_MODEL_ID):
            raise ModelError(
                f"head {h.name!r} was fit on {h.features!r} features, which do not match the model in use "
                f"({self.model_id}); use a head fit on this model"
            )
        return h

    def iter_features(
        self, path: str | os.PathLike, sampling: Sampling = Sampling(), decoder: str = "pyav"
    ) -> Iterator[tuple[list[Frame], np.ndarray]]:
        """Yield (frames, features) batch by batch; frames' pixels are released after each batch."""
        with open_source(path, decoder=decoder) as src:
            batch: list[Frame] = []
            for frame in src.frames(sampling):
                batch.append(frame)
                if len(batch) == self.batch_size:
                    yield batch, self.backend([f.rgb for f in batch])
                    batch = []
            if batch:
                yield batch, self.backend([f.rgb for f in batch])

    def features(self, path: str | os.PathLike, sampling: Sampling = Sampling(), decoder: str = "pyav") -> FrameFeatures:
        idx, pts, rows = [], [], []
        for frames, feats in self.iter_features(path, sampling, decoder):
            idx += [f.index for f in frames]
            pts += [f.pts_time for f in frames]
            rows.append(feats)
        if not rows:
            raise ModelError(f"{path}: no frames were selected by the sampling ({sampling.describe()})")
        return FrameFeatures(str(path), np.array(idx, np.int64), np.array(pts, np.float64), np.concatenate(rows))

    def score(
        self,
        path: str | os.PathLike,
        sampling: Sampling = Sampling(),
        decoder: str = "pyav",
        on_frames: Callable[[pd.DataFrame], None] | None = None,
    ) -> VideoScore:
        """Score one input. ``on_frames`` receives each batch's per-frame rows as they are scored."""
        if self.head is None:
            raise ModelError("no head given: pass --head NAME|PATH for these weights (see `contrique-video import-head`)")
        pooled_feature = RunningMean()
        parts = []
        for frames, feats in self.iter_features(path, sampling, decoder):
            pooled_feature.add(feats)
            rows = pd.DataFrame(
                {"frame": [f.index for f in frames], "pts_time": [f.pts_time for f in frames], "score": self.head.predict(feats)}
            )
            parts.append(rows)
            if on_frames is not None:
                on_frames(rows)
        if not parts:
            raise ModelError(f"{path}: no frames were selected by the sampling ({sampling.describe()})")
        table = pd.concat(parts, ignore_index=True)
        feature = pooled_feature.mean
        return VideoScore(
            file=str(path),
            score=float(self.head.predict(feature)[0]),
            pooled=score_stats(table["score"].to_numpy()),
            frames=table,
            model=self.model_id,
            head=self.head.name,
            scale=self.head.scale,
            higher_is_better=self.head.higher_is_better,
            sampling=sampling.describe(),
            feature=feature,
        )


def score(path: str | os.PathLike, sampling: Sampling = Sampling(), decoder: str = "pyav", **scorer_options) -> VideoScore:
    """Score one video or image with a fresh :class:`Scorer` (build one yourself to score many)."""
    return Scorer(**scorer_options).score(path, sampling=sampling, decoder=decoder)


def available_heads() -> list[str]:
    return sorted(builtin_heads())

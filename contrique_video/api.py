"""The Python API the CLI is built on: source -> sampler -> encoder backend -> pooling -> head.

    >>> import contrique_video as cv
    >>> result = cv.score("input.mp4")            # built-in model and head
    >>> result.score, result.pooled["p5"], result.frames.head()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from contrique_video.backends import open_backend
from contrique_video.decode.sampler import Sampling
from contrique_video.decode import Frame, open_source
from contrique_video.errors import InputError, ModelError
from contrique_video.features import Block
from contrique_video.models import model_path
from contrique_video.models.card import NSS_FEATURES as NUM_NSS
from contrique_video.models.card import is_card, read_card
from contrique_video.models.head import LinearHead, resolve_head
from contrique_video.pooling import RunningMean, score_stats

log = logging.getLogger("contrique_video")
DEFAULT_HEAD = "clive"  # for a built-in card that names no default head
DEFAULT_MAX_PIXELS = 4096 * 2304  # all 4K formats; larger frames are refused unless max_pixels says otherwise
FRAME_COLUMNS = ["frame", "pts_time", "score"]


def builtin_weights() -> Path | None:
    """The built-in model's card (assets/builtin.json), which every backend loads like a checkpoint path;
    None when this install lacks it or the weights file the card names."""
    path = Path(str(resources.files("contrique_video") / "assets" / "builtin.json"))
    if not path.is_file():
        return None
    return path if read_card(path).weights.is_file() else None


def builtin_card() -> dict:
    """The built-in model's card as JSON: id, arch, variant, layout, weights and their provenance, training."""
    return json.loads((Path(str(resources.files("contrique_video") / "assets" / "builtin.json"))).read_text())


def card_default_head(card) -> str | None:
    """The head a model scores with when none is named: its card's default (``DEFAULT_HEAD`` for a built-in
    card that names none); None for a bare checkpoint. ``score``, crf-search, ladders and hooks all use it."""
    if card is None:
        return None
    return card.default_head or (DEFAULT_HEAD if card.id.startswith("builtin") else None)


def default_head(weights: str | os.PathLike | None = None) -> str | None:
    """:func:`card_default_head` of ``weights`` (default: the built-in model), read without loading it."""
    path = builtin_weights() if weights is None else model_path(weights)
    return card_default_head(read_card(path)) if path is not None and is_card(path) else None


@dataclass
class VideoScore:
    """One input's result. ``frames`` has one row per sampled frame: frame, pts_time, score.

    ``hdr`` is "pq" or "hlg" for HDR input (scored as SDR), else None; ``warnings`` holds the input's warnings
    (HDR, damage, a lossy pipe) as short strings, so a record read later still says why a score may mislead.
    """

    file: str
    score: float
    pooled: dict
    frames: pd.DataFrame
    model: str
    head: str
    scale: str
    higher_is_better: bool
    sampling: str
    backend: str
    feature: np.ndarray = field(repr=False)
    hdr: str | None = None
    warnings: list[str] = field(default_factory=list)
    reference: dict | None = None  # VMAF against a reference (score --reference): see reference.add_vmaf
    raw_score: float | None = None  # the head's linear value before its mapping into the range (same as score without one)

    @property
    def frames_scored(self) -> int:
        return len(self.frames)

    def record(self) -> dict:
        """The JSON record (stable keys) printed by ``score --format json``."""
        return {
            "file": self.file,
            "score": self.score,
            "raw_score": self.raw_score,
            "pooled": self.pooled,
            "frames_scored": self.frames_scored,
            "model": self.model,
            "head": self.head,
            "scale": self.scale,
            "higher_is_better": self.higher_is_better,
            "sampling": self.sampling,
            "backend": self.backend,
            "hdr": self.hdr,
            "warnings": list(self.warnings),
            **(self.reference or {}),
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

    ``weights=None`` uses the built-in model; ``head=None`` uses the built-in head for it (other weights need
    a head to score, none for features). ``weights`` is a CONTRIQUE ResNet checkpoint or a model card (JSON
    naming a state_dict and its arch, variant and layout: :mod:`contrique_video.models.card`). ``backend=None`` means $CONTRIQUE_VIDEO_BACKEND, else ``"auto"``
    (see :func:`contrique_video.backends.auto_choice`). ``max_pixels`` refuses larger frames before they
    are decoded (the default admits 4096x2304, so all 4K; None admits any size).
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        head: str | os.PathLike | LinearHead | None = None,
        device: str = "cpu",
        backend: str | None = None,
        precision: str = "auto",
        batch_size: int = 4,
        threads: int | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ):
        if threads and "torch" in sys.modules:  # a torch backend sets them when it opens (backends/pytorch.py)
            sys.modules["torch"].set_num_threads(threads)
        if weights is None:
            path = builtin_weights()
            if path is None:
                raise ModelError(
                    "this install has no built-in model; pass --weights PATH (e.g. the official "
                    "CONTRIQUE_checkpoint25.tar) and --head NAME|PATH (see `contrique-video import-head`)"
                )
        else:
            path = model_path(weights)
        card = read_card(path) if is_card(path) else None
        # A card names its model and its feature layout, which heads are matched by; a bare checkpoint its file.
        self.model_id = card.id if card else f"weights:{path.name}"
        self.feature_layout = card.feature_layout if card else None
        self.nss = bool(card and card.nss)
        self.default_head = card_default_head(card)
        self.device = device
        self.backend = open_backend(path, backend or os.environ.get("CONTRIQUE_VIDEO_BACKEND") or "auto", precision,
                                    device, threads)
        # Feature layout: encoder [full | half], then (cards with "nss": true) 36 NSS features.
        encoder = Block(card.spec.block, self.backend.feature_dim, card.standardize) if card else \
            Block("contrique", self.backend.feature_dim)  # a bare checkpoint is the paper's ResNet
        self.blocks = [encoder] + ([Block("nss", NUM_NSS, True)] if self.nss else [])
        self.feature_dim = sum(b.size for b in self.blocks)
        self.batch_size = max(1, int(batch_size))
        self.max_pixels = max_pixels
        self._head_spec = head
        self._head: LinearHead | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="contrique-nss")

    def check_head(self) -> LinearHead:
        """The head, resolved on first use (features and fitting need none), or a one-line error saying how."""
        if self._head is not None:
            return self._head
        spec = self._head_spec
        if spec is None:
            if self.default_head is None:
                raise ModelError("no head given: pass --head NAME|PATH for these weights (see `contrique-video import-head`)")
            spec = self.default_head
        h = spec if isinstance(spec, LinearHead) else resolve_head(str(spec))
        h.check_fits(self.feature_layout, self.feature_dim)
        self._head = h
        return h

    def frame_features(self, frames: list[np.ndarray]) -> np.ndarray:
        """Feature rows for RGB frames: CONTRIQUE [full | half], plus NSS for the built-in model.

        The NSS features (about a fifth of the encoder's time at 1080p) are computed on a second thread
        while the encoder runs: NumPy and SciPy release the GIL, and the encoder does not keep both cores busy.
        """
        if not self.nss:
            return self.backend(frames)
        from contrique_video.models.nss import nss_features  # SciPy: only for a card with NSS features

        nss = self._worker.submit(lambda: np.stack([nss_features(f) for f in frames]))
        return np.hstack([self.backend(frames), nss.result()])

    def iter_features(
        self,
        path: str | os.PathLike,
        sampling: Sampling = Sampling(),
        decoder: str = "pyav",
        on_open: Callable[[int | None], None] | None = None,
        notes: dict | None = None,
    ) -> Iterator[tuple[list[Frame], np.ndarray]]:
        """Yield (frames, features) batch by batch; frames' pixels are released after each batch.

        ``on_open`` receives the expected number of frames (None if unknown) once the input is open. ``notes``,
        if given, receives the source's ``hdr`` and ``warnings`` once decoding has ended.
        """
        with open_source(path, decoder=decoder, device=self.device, max_pixels=self.max_pixels) as src, _naming(path):
            if self.max_pixels and src.width * src.height > self.max_pixels:
                raise InputError(f"{path}: {src.width}x{src.height} frames exceed --max-pixels {self.max_pixels}")
            if on_open is not None:
                on_open(1 if src.is_image else sampling.expected_count(src.duration, src.fps))
            batch: list[Frame] = []
            for frame in prefetch(src.frames(sampling), self.batch_size):
                batch.append(frame)
                if len(batch) == self.batch_size:
                    yield batch, self.frame_features([f.rgb for f in batch])
                    batch = []
            if batch:
                yield batch, self.frame_features([f.rgb for f in batch])
            if notes is not None:
                notes.update(hdr=src.hdr, warnings=list(src.warnings))

    def features(self, path: str | os.PathLike, sampling: Sampling = Sampling(), decoder: str = "pyav") -> FrameFeatures:
        idx, pts, rows = [], [], []
        for frames, feats in self.iter_features(path, sampling, decoder):
            idx += [f.index for f in frames]
            pts += [f.pts_time for f in frames]
            rows.append(feats)
        if not rows:
            raise ModelError(f"{path}: no frames were selected by the sampling ({sampling.describe()})")
        return FrameFeatures(str(path), np.array(idx, np.int64), np.array(pts, np.float64), np.concatenate(rows))

    def mean_feature(self, path: str | os.PathLike, sampling: Sampling = Sampling(), decoder: str = "pyav") -> np.ndarray:
        """The mean feature over the sampled frames: what a head is applied to, and what heads are fit on."""
        pooled = RunningMean()
        for _, feats in self.iter_features(path, sampling, decoder):
            pooled.add(feats)
        if not pooled.count:
            raise ModelError(f"{path}: no frames were selected by the sampling ({sampling.describe()})")
        return pooled.mean

    def score(
        self,
        path: str | os.PathLike,
        sampling: Sampling = Sampling(),
        decoder: str = "pyav",
        on_frames: Callable[[pd.DataFrame], None] | None = None,
        on_open: Callable[[int | None], None] | None = None,
    ) -> VideoScore:
        """Score one input. ``on_frames`` receives each batch's per-frame rows as they are scored."""
        head = self.check_head()
        pooled_feature = RunningMean()
        parts = []
        notes: dict = {}
        for frames, feats in self.iter_features(path, sampling, decoder, on_open, notes):
            pooled_feature.add(feats)
            rows = pd.DataFrame(
                {"frame": [f.index for f in frames], "pts_time": [f.pts_time for f in frames], "score": head.predict(feats)}
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
            score=float(head.predict(feature)[0]),
            raw_score=float(head.predict_raw(feature)[0]),
            pooled=score_stats(table["score"].to_numpy()),
            frames=table,
            model=self.model_id,
            head=head.name,
            scale=head.scale,
            higher_is_better=head.higher_is_better,
            sampling=sampling.describe(),
            backend=self.backend.describe(),
            feature=feature,
            hdr=notes.get("hdr"),
            warnings=notes.get("warnings", []),
        )


def score(path: str | os.PathLike, sampling: Sampling = Sampling(), decoder: str = "pyav", **scorer_options) -> VideoScore:
    """Score one video or image with a fresh :class:`Scorer` (build one yourself to score many)."""
    return Scorer(**scorer_options).score(path, sampling=sampling, decoder=decoder)


def prefetch(frames: Iterator[Frame], depth: int) -> Iterator[Frame]:
    """Decode on a background thread, up to ``depth`` frames ahead, so decoding overlaps inference.

    Memory stays bounded by the queue; an error in the decoder is re-raised here, and stopping early (an
    error downstream, a timeout) tells the decoder to stop before the source is closed.
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        buffer.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="contrique-decode", daemon=True)
    thread.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                buffer.get(timeout=0.05)
        thread.join()


@contextlib.contextmanager
def _naming(path) -> Iterator[None]:
    """Errors about a frame (e.g. too small) name the input, as the sources' own errors do."""
    try:
        yield
    except InputError as exc:
        if str(path) in str(exc):
            raise
        raise InputError(f"{path}: {exc}") from None

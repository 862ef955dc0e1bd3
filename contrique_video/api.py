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
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from contrique_video.backends import BackendChoice, open_choice
from contrique_video.decode import Frame, open_source
from contrique_video.decode.prefetch import prefetch
from contrique_video.decode.sampler import Sampling
from contrique_video.errors import InputError, ModelError
from contrique_video.features import Block
from contrique_video.models import ResolvedModel, model_path, resolve_model
from contrique_video.models.card import NSS_FEATURES as NUM_NSS
from contrique_video.models.card import is_card, read_card
from contrique_video.models.head import LinearHead, resolve_head
from contrique_video.pooling import RunningMean, score_stats

log = logging.getLogger("contrique_video")
DEFAULT_HEAD = "clive"  # for a built-in card that names no default head
DEFAULT_MAX_PIXELS = 4096 * 2304  # all 4K formats; larger frames are refused unless max_pixels says otherwise
FRAME_COLUMNS = ["frame", "pts_time", "score"]
# How a record's score is computed (its "pooling" field): the per-frame scores are not averaged.
POOLING = "head applied to the mean feature of the scored frames; frame scores are the head applied to each frame"
#: Pixels per encoder call on the CPU: one 1080p frame. The encoder's activations grow with the pixels in a call,
#: so they, not the decoded frames, set the peak memory: the default score of a 1080p clip peaked at 4.1 GB
#: with 4 frames per call and 1.4 GB with 1 (results/memory.csv). Smaller frames still go several at a time.
CPU_BATCH_PIXELS = 1920 * 1088


def builtin_weights() -> Path | None:
    """The built-in model's card (assets/builtin.json), which every backend loads like a checkpoint path;
    None when this install lacks it or the weights file the card names."""
    path = _builtin_path()
    return path if path.is_file() and read_card(path).weights.is_file() else None


def _builtin_path() -> Path:
    return Path(str(resources.files("contrique_video") / "assets" / "builtin.json"))


def builtin_model() -> ResolvedModel:
    """The built-in model resolved, or a one-line error saying what to pass when this install lacks it."""
    path = _builtin_path()
    try:
        if path.is_file():
            return resolve_model(path)
    except ModelError:
        if read_card(path).weights.is_file():
            raise  # the weights are there but damaged: that error says so
    raise ModelError("this install has no built-in model; pass --weights PATH (e.g. the official "
                     "CONTRIQUE_checkpoint25.tar) and --head NAME|PATH (see `contrique-video import-head`)")


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
    pooling: str = POOLING
    width: int | None = None  # the input's own frame size, as displayed
    height: int | None = None
    display: tuple[int, int] | None = None  # (width, height) the frames were scaled to and scored at; None: own size

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
            "pooling": self.pooling,
            "backend": self.backend,
            "hdr": self.hdr,
            "warnings": list(self.warnings),
            "width": self.width,
            "height": self.height,
            "display": list(self.display) if self.display else None,
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
    are decoded (the default admits 4096x2304, so all 4K; None admits any size). ``model``: the model resolved
    once (:class:`~contrique_video.models.ResolvedModel`), which ``weights`` may also be; ``choice``: as asked.
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
        # Resolved once (card read, weights checked) and handed to the backend and its caches as it is.
        self.model = builtin_model() if weights is None else resolve_model(weights)
        card = self.model.card
        # A card names its model and its feature layout, which heads are matched by; a bare checkpoint its file.
        self.model_id = self.model.id
        self.feature_layout = self.model.feature_layout
        self.nss = bool(card and card.nss)
        self.default_head = card_default_head(card)
        self.device = device
        head = resolve_head(str(head)) if isinstance(head, (str, os.PathLike)) else head  # auto checks its name
        self.choice = BackendChoice(backend or os.environ.get("CONTRIQUE_VIDEO_BACKEND") or "auto", precision, device,
                                    threads, head.name if head is not None else None)
        self.backend = open_choice(self.model, self.choice)
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
        """The head (the default read on first use: features and fitting need none), or a one-line error saying how."""
        if self._head is not None:
            return self._head
        spec = self._head_spec
        if spec is None:
            if self.default_head is None:
                raise ModelError("no head given: pass --head NAME|PATH for these weights (see `contrique-video import-head`)")
            spec = self.default_head
        h = spec if isinstance(spec, LinearHead) else resolve_head(str(spec))
        h.check_fits(self.feature_layout, self.feature_dim, self.model_id)
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
            size = self.frames_per_call(src.width, src.height)
            frames = prefetch(src.frames(sampling), size)
            unknown_length = not src.is_image and sampling.on_stream(src.duration)
            yield from self._stream_batches(frames, src, size) if unknown_length else self._batches(frames, size)
            if notes is not None:
                notes.update(hdr=src.hdr, warnings=list(src.warnings), width=src.width, height=src.height,
                             sampling=src.selector.description if src.selector else sampling.describe())

    def frames_per_call(self, width: int, height: int) -> int:
        """Frames decoded ahead and sent to the encoder at once: ``batch_size``, and on the CPU no more than
        :data:`CPU_BATCH_PIXELS` pixels (at least one frame). A GPU keeps ``batch_size``: its memory is not RSS."""
        if str(self.device).startswith("cuda"):
            return self.batch_size
        return max(1, min(self.batch_size, CPU_BATCH_PIXELS // max(1, width * height)))

    def _batches(self, frames: Iterator[Frame], size: int) -> Iterator[tuple[list[Frame], np.ndarray]]:
        batch: list[Frame] = []
        for frame in frames:
            batch.append(frame)
            if len(batch) == size:
                yield batch, self.frame_features([f.rgb for f in batch])
                batch = []
        if batch:
            yield batch, self.frame_features([f.rgb for f in batch])

    def _stream_batches(self, frames: Iterator[Frame], src, size: int) -> Iterator[tuple[list[Frame], np.ndarray]]:
        """A stream of unknown length: the frames its :class:`StreamSelector` still holds are kept as the decoder
        gave them (at most ``2N + 1``, unconverted), and only the ``N`` it chooses at the end are converted and
        encoded, so a pipe costs the encoder what the file's sampling does."""
        held: dict[int, Frame] = {}
        for frame in frames:
            if src.selector.holds(frame.index):
                held[frame.index] = frame
                held = {i: f for i, f in held.items() if src.selector.holds(i)}
        chosen = [held[i].loaded() for i in src.selector.choose() if i in held]
        yield from self._batches(iter(chosen), size)

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
        display: tuple[int, int] | None = None,
    ) -> VideoScore:
        """Score one input. ``on_frames`` receives each batch's per-frame rows as they are scored.

        ``display`` (width, height) scores the input as watched on that display: every frame is scaled to it
        first, as ``ladder`` scales its renditions (:func:`~contrique_video.encoding.encode.upscale`), because
        the model scores the pixels it gets: a 720p encode at its own size scores higher than the same encode
        at 1080p. By default each input is scored at its own size.
        """
        if display is None:
            return self._score(path, sampling, decoder, on_frames, on_open)
        with _at_display(path, display) as (shown, native):
            result = self._score(shown, sampling, decoder, on_frames, on_open)
        result.file, (result.width, result.height), result.display = str(path), native, tuple(display)
        return result

    def _score(self, path, sampling, decoder, on_frames, on_open) -> VideoScore:
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
            sampling=notes.get("sampling", sampling.describe()),
            backend=self.backend.describe(),
            feature=feature,
            hdr=notes.get("hdr"),
            warnings=notes.get("warnings", []),
            width=notes.get("width"),
            height=notes.get("height"),
        )


def score(path: str | os.PathLike, sampling: Sampling = Sampling(), decoder: str = "pyav",
          display: tuple[int, int] | None = None, **scorer_options) -> VideoScore:
    """Score one video or image with a fresh :class:`Scorer` (build one yourself to score many); ``display``
    as in :meth:`Scorer.score`."""
    return Scorer(**scorer_options).score(path, sampling=sampling, decoder=decoder, display=display)


@contextlib.contextmanager
def _at_display(path, display: tuple[int, int]) -> Iterator[tuple[Path, tuple[int, int]]]:
    """(the file to score at ``display`` size, the input's own size): the input itself when it is already that
    size, else a lossless scaled copy in a temporary folder, removed afterwards."""
    from contrique_video.ffmpeg import scale_lossless

    if str(path) == "-":
        raise InputError("display size: `-` (stdin) cannot be scaled; give a file")
    with open_source(path) as src:
        native = (src.width, src.height)
    size = (int(display[0]), int(display[1]))
    if native == size:
        yield Path(path), native
        return
    with tempfile.TemporaryDirectory(prefix="contrique-display-") as tmp:
        yield Path(scale_lossless(path, Path(tmp) / "display.mkv", size)), native


@contextlib.contextmanager
def _naming(path) -> Iterator[None]:
    """Errors about a frame (e.g. too small) name the input, as the sources' own errors do."""
    try:
        yield
    except InputError as exc:
        if str(path) in str(exc):
            raise
        raise InputError(f"{path}: {exc}") from None

"""CRF search to a target no-reference score, in the manner of ab-av1's ``crf-search``.

Deterministic samples of the input are cut once into a lossless reel; each probe encodes the reel at one
CRF and scores the encode with no reference. The next CRF is interpolated between the probes that bracket
the target, and the answer is the highest CRF whose interpolated score still meets the target, with the
size a full encode is predicted to have. Scores are made monotone in CRF (isotonic regression) before any
decision, because a no-reference score is noisy and a noisy probe must not make the bracket cross.

Progress is reported as events (plain dicts, printed as NDJSON by the CLI) so other tools can drive it.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression

from .encode import check_encoder, check_crf, encode, lossless_reel, media_info
from .errors import ContriqueError, InputError
from .hooks import centred

DEFAULT_MIN_CRF = 10

log = logging.getLogger("contrique_video")


@dataclass(frozen=True)
class Probe:
    crf: int
    score: float
    bytes: int
    kbps: float


@dataclass
class SearchResult:
    """The chosen CRF with its interpolated score and predicted full-encode size; ``reached`` is False when
    even the lowest CRF searched scores below the target (the lowest is then reported)."""

    encoder: str
    target: float
    crf: int
    score: float
    kbps: float
    predicted_bytes: int
    reached: bool
    probes: list[Probe] = field(default_factory=list)

    def event(self) -> dict:
        return {"type": "result", **{k: v for k, v in asdict(self).items() if k != "probes"},
                "probes": len(self.probes)}


def sample_spans(duration: float | None, samples: int, sample_duration: float, name: str = "input") -> list[tuple[float, float]]:
    """``samples`` spans of ``sample_duration`` seconds centred on equal parts of the input (deterministic).

    An input shorter than the samples together is used whole, as ab-av1 does: it is then the best sample there is,
    and refusing it would make the defaults fail on every short clip.
    """
    if duration is None or not math.isfinite(duration) or duration <= 0:
        raise InputError(f"{name}: its duration is unknown, so samples cannot be placed; remux it to a file first")
    if samples < 1 or not sample_duration > 0:
        raise InputError(f"need at least 1 sample of more than 0 s, got {samples} x {sample_duration:g} s")
    if samples * sample_duration > duration + 1e-6:
        log.info("%s is %.2f s long, no longer than the %d samples x %g s requested: using the whole input",
                 name, duration, samples, sample_duration)
        return [(0.0, duration)]
    spans = []
    for k in range(samples):
        centre = (k + 0.5) * duration / samples
        start = min(max(0.0, centre - sample_duration / 2), duration - sample_duration)
        spans.append((round(start, 6), sample_duration))
    return spans


def monotone(crfs: np.ndarray, scores: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Scores refit so quality never improves as CRF rises."""
    return IsotonicRegression(increasing=not higher_is_better).fit_transform(crfs, scores)


def next_crf(probes: list[Probe], target: float, lo: int, hi: int, higher_is_better: bool) -> int | None:
    """The CRF to probe next, or None when the bracket is closed (or the target is out of reach)."""
    crfs = np.array([p.crf for p in probes], float)
    order = np.argsort(crfs)
    crfs, fitted = crfs[order], monotone(crfs[order], np.array([probes[i].score for i in order]), higher_is_better)
    meets = fitted >= target if higher_is_better else fitted <= target
    good = crfs[meets].max() if meets.any() else None  # highest CRF meeting the target
    bad = crfs[~meets].min() if (~meets).any() else None  # lowest CRF missing it
    if bad is None:
        nxt = math.ceil((good + hi) / 2)
    elif good is None:
        nxt = math.floor((lo + bad) / 2)
    else:
        sg, sb = fitted[crfs == good][0], fitted[crfs == bad][0]
        frac = (sg - target) / (sg - sb) if sg != sb else 0.5
        nxt = round(good + frac * (bad - good))
        nxt = min(max(nxt, int(good) + 1), int(bad) - 1)
    tried = {p.crf for p in probes}
    return None if nxt in tried or not lo <= nxt <= hi else int(nxt)


def choose(probes: list[Probe], target: float, higher_is_better: bool, encoder: str, duration: float) -> SearchResult:
    """Interpolate the probes: the highest whole CRF whose monotone score meets the target."""
    probes = sorted(probes, key=lambda p: p.crf)
    crfs = np.array([p.crf for p in probes], float)
    fitted = monotone(crfs, np.array([p.score for p in probes]), higher_is_better)
    grid = np.arange(int(crfs[0]), int(crfs[-1]) + 1)
    scores = np.interp(grid, crfs, fitted)
    meets = scores >= target if higher_is_better else scores <= target
    crf = int(grid[meets].max()) if meets.any() else int(grid[0])
    kbps = float(np.exp(np.interp(crf, crfs, np.log([p.kbps for p in probes]))))
    return SearchResult(encoder, target, crf, float(np.interp(crf, crfs, fitted)), kbps,
                        int(round(kbps * 1000 / 8 * duration)), bool(meets.any()), probes)


def crf_search(
    path: str | os.PathLike,
    scorer,
    encoder: str,
    target: float,
    *,
    samples: int = 4,
    sample_duration: float = 2.0,
    frames: int = 8,
    min_crf: int | None = None,
    max_crf: int | None = None,
    max_probes: int = 6,
    preset: str | None = None,
    ffmpeg: str | None = None,
    workdir: str | os.PathLike | None = None,
    on_event: Callable[[dict], None] = lambda event: None,
) -> SearchResult:
    """Search the CRF of ``encoder`` whose encodes of ``path`` score ``target`` with ``scorer``'s head.

    Every step is passed to ``on_event``: ``samples``, then one ``probe`` per encode, then ``result``.
    If an encode or the scorer fails after some probes, an ``error`` event with ``"partial": true`` says so
    (the probes already reported stay valid) and the error is raised. Temporary files are always removed.
    """
    spec = check_encoder(encoder, ffmpeg)
    head = scorer.check_head()
    lo_r, hi_r = head.range
    if not lo_r <= target <= hi_r:
        raise InputError(f"target {target:g} is outside the range {lo_r:g}..{hi_r:g} of head {head.name!r} ({head.scale})")
    lo = max(spec.crf_min, DEFAULT_MIN_CRF) if min_crf is None else min_crf
    hi = spec.crf_max if max_crf is None else max_crf
    check_crf(spec, lo)
    check_crf(spec, hi)
    if lo >= hi:
        raise InputError(f"--min-crf {lo} must be below --max-crf {hi}")
    info = media_info(path)
    spans = sample_spans(info.duration, samples, sample_duration, str(path))
    probes: list[Probe] = []
    with tempfile.TemporaryDirectory(prefix="contrique-crf-", dir=workdir) as tmp:
        reel = lossless_reel(path, Path(tmp) / "reel.mkv", spans)
        on_event({"type": "samples", "encoder": encoder, "target": target, "spans": [list(s) for s in spans],
                  "frames": reel.frames, "seconds": reel.seconds, "width": reel.width, "height": reel.height})
        crf: int | None = round((lo + hi) / 2)
        try:
            while crf is not None and len(probes) < max_probes:
                out = encode(reel.path, Path(tmp) / f"crf{crf}.mkv", encoder, crf, preset=preset, ffmpeg=ffmpeg)
                scored = scorer.score(out.path, sampling=centred(frames, reel.seconds))
                out.path.unlink()
                probe = Probe(crf, scored.score, out.bytes, out.kbps)
                probes.append(probe)
                on_event({"type": "probe", **asdict(probe)})
                crf = next_crf(probes, target, lo, hi, head.higher_is_better)
        except ContriqueError as exc:
            if probes:
                on_event({"type": "error", "partial": True, "probes": len(probes), "message": str(exc)})
            raise
    result = choose(probes, target, head.higher_is_better, encoder, info.duration)
    on_event(result.event())
    return result

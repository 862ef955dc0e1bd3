"""CRF search to a target no-reference score, in the manner of ab-av1's ``crf-search``.

Deterministic samples of the input are cut once into a lossless reel (FFV1, the source's own frames, pixel
format and timing; the input itself when it is no longer than the samples); each probe encodes the reel at
one CRF with the same ffmpeg command as the final encode and scores it with no reference. The first probe
is mid-range and the second the bound on the side it missed, so an out-of-reach target is known in two;
then the next CRF is interpolated between the probes that bracket the target, and the answer is the highest CRF whose interpolated score still meets the target, with the
size a full encode is predicted to have. Scores are made monotone in CRF (isotonic regression) before any
decision, because a no-reference score is noisy and a noisy probe must not make the bracket cross.

Progress is reported as events (plain dicts, printed as NDJSON by the CLI) so other tools can drive it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression

from contrique_video.encoding.encode import (
    EncodeSettings,
    check_encoder,
    check_settings,
    encode,
    ffmpeg_args,
    lossless_reel,
)
from contrique_video.encoding.probe import describe, frame_sizes, media_info
from contrique_video.encoding.sampling import centred, sample_spans
from contrique_video.errors import ContriqueError, InputError, UsageError

DEFAULT_MIN_CRF = 10
POOLS = ("mean", "harmonic_mean", "p5", "p1", "min")  # what --target applies to
#: Points by which a probe may score better than one at a lower CRF before the result warns: beyond the score's
#: noise, the encoder's smoothing raised it (grain or noise removed; see the model card's known limits).
RISE_WARNING = 1.0


@dataclass(frozen=True)
class Probe:
    """One encode of the reel: its score, its size, and the bitrate a full encode would have at this CRF
    (``kbps``: see :func:`joinless_bytes`)."""

    crf: int
    score: float
    bytes: int
    kbps: float
    encode_seconds: float = float("nan")  # wall time of the probe's encode (for the encode-time estimate)


def pooled_score(result, pool: str) -> float:
    """The statistic of a scored file that the target applies to: ``mean`` is the video score itself;
    the others pool its per-frame scores (``p1``, ``p5`` percentiles, ``harmonic_mean``, ``min``)."""
    if pool == "mean":
        return float(result.score)
    value = (getattr(result, "pooled", None) or {}).get(pool)
    if value is None and getattr(result, "frames", None) is not None:
        from contrique_video.pooling import pool as pool_values

        value = pool_values(result.frames["score"], pool)
    if value is None:
        raise InputError(f"--pool {pool}: not defined for these frame scores (harmonic_mean needs every score > 0)")
    return float(value)


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
    pool: str = "mean"
    predicted_percent: float | None = None  # predicted_bytes as a share of the input file's size
    predicted_encode_seconds: float | None = None  # from the probes' encode speed, scaled to the input
    max_encoded_percent: float | None = None
    too_big: bool = False  # predicted_percent exceeds max_encoded_percent: the CRF is refused
    head: str | None = None  # the head the target and scores are on
    ffmpeg_args: list[str] | None = None  # the final encode's command, for a user to run themselves
    warnings: list[str] = field(default_factory=list)  # what may make the CRF wrong (see :func:`rises`)

    def event(self) -> dict:
        return {"type": "result", **{k: v for k, v in asdict(self).items() if k != "probes"},
                "probes": len(self.probes)}


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
    if bad is None:  # every probe meets the target: try the highest CRF allowed
        nxt = hi
    elif good is None:  # none does: try the lowest, so an out-of-reach target costs two probes
        nxt = lo
    else:
        sg, sb = fitted[crfs == good][0], fitted[crfs == bad][0]
        frac = (sg - target) / (sg - sb) if sg != sb else 0.5
        nxt = round(good + frac * (bad - good))
        nxt = min(max(nxt, int(good) + 1), int(bad) - 1)
    tried = {p.crf for p in probes}
    return None if nxt in tried or not lo <= nxt <= hi else int(nxt)


def rises(probes: list[Probe], higher_is_better: bool) -> list[str]:
    """A warning when some probe scores more than :data:`RISE_WARNING` points better than a probe at a lower CRF:
    the isotonic fit then flattens the ladder and the search drifts to high CRFs, as on grainy sources whose
    grain an encoder smooths away (SVT-AV1 and x265 ladders of grainy film can rise so with the built-in model)."""
    ordered = sorted(probes, key=lambda p: p.crf)
    sign = 1.0 if higher_is_better else -1.0
    worst = max(((sign * (b.score - a.score), a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:]),
                default=None, key=lambda t: t[0])
    if worst is None or worst[0] <= RISE_WARNING:
        return []
    _, a, b = worst
    return [f"the score rose with the CRF (CRF {a.crf}: {a.score:.2f}, CRF {b.crf}: {b.score:.2f}): the encoder may be "
            "smoothing away grain or noise that the score counts as damage, so this CRF may be too high; check it "
            "by eye or with --vmaf"]


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
                        int(round(kbps * 1000 / 8 * duration)), bool(meets.any()), probes,
                        warnings=rises(probes, higher_is_better))


@dataclass(frozen=True)
class SearchSettings:
    """How :func:`crf_search` probes: ``samples`` spans of ``sample_duration`` seconds cut from the input,
    ``frames`` scored per probe encode, CRFs between ``min_crf`` (default: 10, or the encoder's minimum) and
    ``max_crf`` (default: the encoder's maximum), at most ``max_probes`` encodes; ``pool`` is the statistic the
    target applies to (see :func:`pooled_score`), and a CRF whose predicted size is above ``max_encoded_percent``
    of the input file is refused (``too_big``), as ab-av1 does."""

    samples: int = 4
    sample_duration: float = 2.0
    frames: int = 8
    min_crf: int | None = None
    max_crf: int | None = None
    max_probes: int = 6
    pool: str = "mean"
    max_encoded_percent: float | None = None

    def crf_range(self, spec) -> tuple[int, int]:
        """The lowest and highest CRF searched, defaults filled in; a :class:`UsageError` naming the option when
        one is outside the encoder's scale or they are in the wrong order (the CLI relies on this check)."""
        lo = max(spec.crf_min, DEFAULT_MIN_CRF) if self.min_crf is None else self.min_crf
        hi = spec.crf_max if self.max_crf is None else self.max_crf
        for option, crf in (("--min-crf", lo), ("--max-crf", hi)):
            if not spec.crf_min <= crf <= spec.crf_max:
                raise UsageError(f"{option}: CRF {crf} is outside {spec.name}'s range {spec.crf_min}..{spec.crf_max}")
        if lo >= hi:
            raise UsageError(f"--min-crf {lo} must be below --max-crf {hi}")
        return lo, hi


def crf_search(
    path: str | os.PathLike,
    scorer,
    encoder: str,
    target: float,
    *,
    search: SearchSettings = SearchSettings(),
    settings: EncodeSettings | None = None,
    ffmpeg: str | None = None,
    workdir: str | os.PathLike | None = None,
    on_event: Callable[[dict], None] = lambda event: None,
    vmaf: bool = False,
    reference: str | os.PathLike | None = None,
) -> SearchResult:
    """Search the CRF of ``encoder`` whose encodes of ``path`` score ``target`` with ``scorer``'s head.

    ``search`` says how (samples, frames per probe, CRF range, probes, pooling, size limit); ``settings`` are
    the encoder arguments every probe (and the final encode) uses. With ``vmaf``, each probe event also has the
    probe's VMAF against the lossless sample reel (libvmaf, every frame); a ``reference`` (the master ``path``
    was made from) is cut at the same spans and measured against instead, and implies ``vmaf``.

    Every step is passed to ``on_event``: ``samples``, then one ``probe`` per encode, then ``result``.
    If an encode or the scorer fails after some probes, an ``error`` event with ``"partial": true`` says so
    (the probes already reported stay valid) and the error is raised. Temporary files are always removed.
    """
    s = search
    samples, sample_duration, frames, max_probes, pool = s.samples, s.sample_duration, s.frames, s.max_probes, s.pool
    max_encoded_percent = s.max_encoded_percent
    settings = settings or EncodeSettings()
    vmaf = vmaf or reference is not None
    if pool not in POOLS:
        raise InputError(f"--pool {pool}: use one of {', '.join(POOLS)}")
    spec = check_encoder(encoder, ffmpeg, settings.quality_option)
    check_settings(encoder, settings, ffmpeg)
    head = scorer.check_head()
    lo_r, hi_r = head.range
    if not lo_r <= target <= hi_r:
        raise InputError(f"target {target:g} is outside the range {lo_r:g}..{hi_r:g} of head {head.name!r} ({head.scale})")
    lo, hi = search.crf_range(spec)
    info = media_info(path)
    spans = sample_spans(info.duration, samples, sample_duration, str(path))
    probes: list[Probe] = []
    with tempfile.TemporaryDirectory(prefix="contrique-crf-", dir=workdir) as tmp:
        whole = spans == [(0.0, info.duration)]
        reel = describe(path) if whole else lossless_reel(path, Path(tmp) / "reel.mkv", spans, ffmpeg)
        ref_reel = reel if reference is None else describe(reference) if whole else \
            lossless_reel(reference, Path(tmp) / "ref.mkv", spans, ffmpeg)
        on_event({"type": "samples", "encoder": encoder, "head": head.name, "target": target, "pool": pool,
                  "spans": [list(s) for s in spans], "frames": reel.frames, "seconds": reel.seconds,
                  "width": reel.width, "height": reel.height,
                  **settings.record(), "preset": settings.preset or spec.preset,
                  **({"reference": str(reference)} if reference is not None else {})})
        joins = [round(k * reel.frames / len(spans)) for k in range(1, len(spans))]  # first frames of samples 2..n
        crf: int | None = round((lo + hi) / 2)
        try:
            while crf is not None and len(probes) < max_probes:
                began = time.perf_counter()
                out = encode(reel.path, Path(tmp) / f"crf{crf}.mkv", encoder, crf, ffmpeg=ffmpeg, settings=settings)
                took = time.perf_counter() - began
                scored = scorer.score(out.path, sampling=centred(frames, out.seconds))
                extra = {"vmaf": _vmaf(out.path, ref_reel, ffmpeg)} if vmaf else {}
                kbps = joinless_bytes(out.path, out.bytes, joins) * 8 / out.seconds / 1000
                out.path.unlink()
                probe = Probe(crf, pooled_score(scored, pool), out.bytes, kbps, round(took, 3))
                probes.append(probe)
                on_event({"type": "probe", "head": head.name, **asdict(probe), **extra})
                crf = next_crf(probes, target, lo, hi, head.higher_is_better)
        except ContriqueError as exc:
            if probes:
                on_event({"type": "error", "partial": True, "probes": len(probes), "message": str(exc)})
            raise
    result = choose(probes, target, head.higher_is_better, encoder, info.duration)
    result.pool, result.head = pool, head.name
    result.ffmpeg_args = ffmpeg_args(path, "OUTPUT", encoder, result.crf, settings=settings, audio=True, ffmpeg=ffmpeg)
    result.predicted_encode_seconds = predict_encode_seconds(probes, result.crf, reel.seconds, info.duration)
    input_bytes = Path(path).stat().st_size if Path(path).is_file() else 0
    if input_bytes:
        result.predicted_percent = round(100 * result.predicted_bytes / input_bytes, 2)
    result.max_encoded_percent = max_encoded_percent
    result.too_big = bool(max_encoded_percent is not None and result.predicted_percent is not None
                          and result.predicted_percent > max_encoded_percent)
    on_event(result.event())
    return result


def _vmaf(encoded: Path, reference, ffmpeg: str | None = None) -> float:
    """libvmaf's mean over every frame of an encode against the file it was encoded from (scaled back to
    the reference's size first when a --vfilter changed it)."""
    from contrique_video.encoding.reference import run_vmaf

    ref = describe(reference.path if hasattr(reference, "path") else reference)
    enc = describe(encoded)
    size = (ref.width, ref.height) if (enc.width, enc.height) != (ref.width, ref.height) else None
    return float(run_vmaf(encoded, ref.path, size=size, ffmpeg=ffmpeg).pooled["mean"])


def joinless_bytes(path: Path, size: int, joins: list[int]) -> int:
    """The size of a reel's encode with the frame that each join between samples made an intra frame
    counted as an inter frame.

    Where one sample ends and the next begins, the picture jumps, and the encoder codes the frame there
    (within a frame of the join, as B-frames reorder) as a new picture; a full encode of the input has no
    such jump. So the largest frame at each join is counted at the mean size of the inter frames away from
    the joins, and a probe predicts the size of an encode shaped like the final one: the encoder's own key
    frame interval and scene cuts stay in it."""
    frames = frame_sizes(path)
    near = {i for j in joins for i in (j - 1, j, j + 1)}
    inter = [b for i, (b, key) in enumerate(frames) if i not in near and not key]
    if not joins or not inter:
        return size
    typical = float(np.mean(inter))
    extra = sum(max(0.0, max(b for b, _ in frames[max(0, j - 1):j + 2]) - typical) for j in joins if j < len(frames))
    return int(round(size - extra))


def predict_encode_seconds(probes: list[Probe], crf: int, reel_seconds: float, duration: float) -> float | None:
    """Wall time a full encode should take: the probes' encode time per second of video, interpolated at the
    chosen CRF (an encoder is slower at low CRFs), times the input's duration."""
    timed = sorted((p.crf, p.encode_seconds / reel_seconds) for p in probes
                   if math.isfinite(p.encode_seconds) and reel_seconds > 0)
    if not timed:
        return None
    return round(float(np.interp(crf, [c for c, _ in timed], [r for _, r in timed])) * duration, 2)


def encode_chosen(
    path: str | os.PathLike,
    dst: str | os.PathLike,
    result: SearchResult,
    scorer,
    *,
    frames: int,
    settings: EncodeSettings | None = None,
    ffmpeg: str | None = None,
    vmaf: bool = False,
    reference: str | os.PathLike | None = None,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict:
    """ab-av1's auto-encode step: the whole input at the chosen CRF (audio copied), then scored (``frames``
    frames centred in equal parts, as the probes) on the same pool; the ``encode`` event. Its ``vmaf`` (with
    ``vmaf`` or a ``reference``) is against ``reference``, else against ``path``. ``on_progress(stage, n)``
    is told the frames encoded (stage ``encode``), then the frames scored (``score``)."""
    vmaf = vmaf or reference is not None
    began = time.perf_counter()
    progress = on_progress or (lambda stage, n: None)
    out = encode(path, dst, result.encoder, result.crf, ffmpeg=ffmpeg, settings=settings, audio=True,
                 on_progress=lambda n: progress("encode", n))
    took = time.perf_counter() - began
    done = [0]

    def scored_rows(rows) -> None:
        done[0] += len(rows)
        progress("score", done[0])

    scored = scorer.score(out.path, sampling=centred(frames, out.seconds), on_frames=scored_rows)
    input_bytes = Path(path).stat().st_size if Path(path).is_file() else 0
    table = getattr(scored, "frames", None)
    return {"type": "encode", "path": str(out.path), "encoder": result.encoder, "head": result.head, "crf": result.crf,
            "pool": result.pool, "target": result.target, "score": pooled_score(scored, result.pool),
            "predicted_score": result.score, "bytes": out.bytes, "kbps": out.kbps,
            "percent": round(100 * out.bytes / input_bytes, 2) if input_bytes else None,
            "encode_seconds": round(took, 2), "frames_scored": None if table is None else len(table),
            **({"vmaf": _vmaf(out.path, reference or path, ffmpeg)} if vmaf else {})}

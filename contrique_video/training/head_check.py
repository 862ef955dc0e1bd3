"""The degradation check of one head, end to end: what ``contrique-video degradation-check`` runs.

A :class:`CheckPlan` says what to score and with what (refusing option combinations that cannot work before any
model loads); :func:`degradation_check` loads the held-out sources, makes the scorer, scores every ladder
(:func:`contrique_video.training.degradation_check.run_check`) and the grain clips
(:mod:`contrique_video.training.grain`), and returns a :class:`CheckReport`: every score, the summary, the grain
metrics and the targets missed, as text, JSON-ready values or results-CSV rows.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contrique_video.errors import ModelError, UsageError
from contrique_video.training.degradation import NOISE_TYPES, SIZE, ladder_kinds
from contrique_video.training.degradation_check import CheckResult, HeadScorer, report, run_check

log = logging.getLogger("contrique_video")

#: The targets ``--strict`` holds a head to: the share of adjacent still pairs ordered, the most a level may score
#: above its clean source (points), the share of every clip's CRF pairs that must fall.
TARGET_ORDERED, TARGET_ABOVE_CLEAN, TARGET_CLIP_CRF = 0.97, 1.0, 0.95


@dataclass(frozen=True)
class CheckPlan:
    """What :func:`degradation_check` scores, and with what. Option combinations that cannot work are refused
    here (:class:`~contrique_video.errors.UsageError`), before any model loads.

    ``weights``/``head``: the model and its head (default: the built-in model and its default head).
    ``features``: frozen ImageNet EfficientNet-Lite features (``lite0|lite1|lite2[/LAYOUT]``, layouts
    ``stages-meanstd``, ``stages-meanstd+nss``, ``last``) scored by ``head`` instead of a model; ``also``: other
    models' cards whose features are appended to them. ``images``: pristine sources (default: the held-out
    photos, the wallpaper ones only with ``wallpapers``, plus the generated sharp-detail ones with ``sharp``);
    ``types``: ladder types (default all; ``("noise",)`` the noise types); ``clips``: panning clips made from
    the first N sources. ``grain``: held-out sources whose 960x540 grain clips (``grain_tiers``) are scored with
    the model's features (``weights``, default the built-in one), cached in ``grain_cache``. ``cache``: the still
    features, per extractor. ``precision``: the model's, as ``score --precision`` (the model card's tables are
    fp32; auto runs bf16 where the card allows it, so its numbers differ a little on such CPUs).
    """

    weights: str | Path | None = None
    head: str | None = None
    features: str | None = None
    also: tuple[str, ...] = ()
    images: tuple[str, ...] | None = None
    wallpapers: Path | None = None
    sharp: bool = False
    types: tuple[str, ...] | None = None
    size: int = SIZE
    clips: int = 3
    clip_frames: int = 8
    cache: Path | None = None
    grain: tuple[str, ...] = ()
    grain_tiers: tuple[int, ...] = (1,)
    grain_cache: Path | None = None
    threads: int | None = None
    precision: str = "auto"

    def __post_init__(self):
        if self.grain and self.features:
            raise UsageError("--grain scores clips with a model's features (the built-in one or --weights): it goes "
                             "without --features")
        if self.features and self.precision != "auto":
            raise UsageError("--precision sets a model's precision: it goes without --features")
        if self.also and not self.features:
            raise UsageError("--also goes with --features (a model's own head cannot read a stacked layout)")
        if self.features:
            if not self.head:
                raise UsageError("--features needs --head: a head fit on those features")
            layout = self.layout()
            if layout not in ("stages-meanstd", "stages-meanstd+nss", "last"):
                raise UsageError(f"unknown layout {layout!r} in --features {self.features}: stages-meanstd, "
                                 "stages-meanstd+nss or last")
            if layout == "last" and self.also:
                raise UsageError("the last layout goes without --also (as heads on it are fit)")
        known = ladder_kinds()
        unknown = [k for k in self.kinds() or () if k not in known]
        if unknown:
            raise UsageError(f"unknown degradation type {unknown[0]!r} in --types; known here: {', '.join(known)}, "
                             "or all, noise")
        bad_tiers = [t for t in self.grain_tiers if t not in (1, 2, 3)]
        if bad_tiers:
            raise UsageError(f"grain tier {bad_tiers[0]} does not exist: tiers 1, 2, 3")
        if self.wallpapers is None:
            need = [n for n in (*(self.images or ()), *self.grain) if ":" not in n]
            if need:
                raise UsageError(f"{need[0]} is a wallpaper photo: pass --wallpapers, the folder of the extracted "
                                 "wallpaper packages")

    def layout(self) -> str:
        """The layout of ``features`` (default stages-meanstd)."""
        return (self.features.partition("/")[2] or "stages-meanstd") if self.features else ""

    def kinds(self) -> list[str] | None:
        """The still ladder types (None: every type available here)."""
        if self.types is None or tuple(self.types) == ("all",):
            return None
        if tuple(self.types) == ("noise",):
            return list(NOISE_TYPES)
        return list(self.types)

    def source_names(self) -> list[str]:
        from contrique_video.training.degradation import HELDOUT, HELDOUT_SHARP

        if self.images:
            return list(self.images)
        return [n for n in HELDOUT if self.wallpapers or ":" in n] + (HELDOUT_SHARP if self.sharp else [])


def make_scorer(plan: CheckPlan) -> HeadScorer:
    """The check's scorer: a model with its head, or frozen Lite features (+ NSS, + other models' features) with
    ``plan.head``. Each extractor's rows go to their own cache file beside ``plan.cache``, so stacked layouts
    reuse every row already extracted."""
    from contrique_video.models.head import resolve_head
    from contrique_video.models.layouts import NSS_SUFFIX
    from contrique_video.training.ranking import (
        FeatureCache,
        StackedFeatures,
        feature_id,
        last_from_stages,
        lite_features,
        model_features,
        nss_rows,
    )

    def card(weights, head=None):
        extract, scorer = model_features(weights, head, plan.threads, plan.precision)
        return extract, feature_id(scorer), scorer

    post = None
    if plan.features:
        variant = plan.features.partition("/")[0]
        layout = plan.layout()
        ext = lite_features(variant, "stages-meanstd")
        parts, head = [(ext, ext.name)], resolve_head(plan.head)
        if layout.endswith(NSS_SUFFIX):
            parts.append((nss_rows, "nss"))
        if layout == "last":
            # sliced out of stages-meanstd (the same numbers), so both layouts share one feature cache
            channels = ext.module.trunk.channels
            post = lambda row: last_from_stages(row[None], channels)[0]  # noqa: E731
    else:
        extract, name, scorer = card(plan.weights, plan.head)
        parts, head = [(extract, name)], scorer.check_head()
    parts += [card(weights)[:2] for weights in plan.also]

    if plan.cache is None:
        cache = None
    else:
        path = Path(plan.cache)
        caches = [(FeatureCache(path if i == 0 else path.with_name(f"{path.stem}_{name.replace('/', '_')}.npz"),
                                f"{name}@{plan.size}", every=50), extract) for i, (extract, name) in enumerate(parts)]
        cache = caches[0][0] if len(caches) == 1 else StackedFeatures(caches)
    extract = parts[0][0] if len(parts) == 1 else (lambda rgb: np.concatenate([ex(rgb) for ex, _ in parts]))
    if plan.features:
        probe = extract(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))  # only its width counts
        if head.dim != len(probe if post is None else post(probe)):
            raise ModelError(f"head {head.name!r} has {head.dim} weights, which do not match {plan.features} features")
    return HeadScorer(extract, head, cache, post)


def grain_scores(plan: CheckPlan, head) -> dict:
    """:func:`contrique_video.training.grain.metrics` of ``head`` on the grain clips of ``plan.grain`` (built and
    featurised with ``plan.weights`` (default the built-in model) where ``plan.grain_cache`` lacks them; every
    cached clip of those sources counts)."""
    from contrique_video.cache import cache_dir
    from contrique_video.training import grain
    from contrique_video.training.ranking import FeatureCache, feature_id, model_features

    _, model = model_features(plan.weights, threads=plan.threads, precision=plan.precision)
    path = plan.grain_cache or cache_dir() / "grain_heldout.npz"
    gcache = FeatureCache(path, feature_id(model) + "/clip-mean", every=5)
    for tier in plan.grain_tiers:
        for source in plan.grain:
            grain.build(grain.plan(source, tier), gcache, model.mean_feature,
                        lambda s: grain.pan(grain.source_image(s, plan.wallpapers)))
    keys = sorted(k for k in gcache.rows if grain.Clip.parse(k).source in plan.grain)
    return grain.metrics(dict(zip(keys, head.predict(np.stack([gcache.rows[k] for k in keys])).tolist())))


def targets_missed(summary: dict, clips: bool, grain_metrics: dict | None = None) -> list[str]:
    """The targets a check misses, one line each (empty: all met): :data:`TARGET_ORDERED`,
    :data:`TARGET_ABOVE_CLEAN`, :data:`TARGET_CLIP_CRF` where there are clips, and the grain targets."""
    s, missed = summary, []
    if not s["ordered_share"] >= TARGET_ORDERED:
        missed.append(f"ordered {100 * s['ordered_share']:.1f}% < {100 * TARGET_ORDERED:.0f}%")
    if not s["max_above_clean"] <= TARGET_ABOVE_CLEAN:
        missed.append(f"a level scores {s['max_above_clean']:+.2f} above its clean source")
    if clips and not s["min_clip_crf_share"] >= TARGET_CLIP_CRF:
        missed.append(f"a clip's CRF pairs fall in only {100 * s['min_clip_crf_share']:.0f}%")
    if grain_metrics is not None:
        from contrique_video.training.grain import missed as grain_missed

        missed += grain_missed(grain_metrics)
    return missed


@dataclass
class CheckReport:
    """A finished check: every score (``result``), the head's name, the sources and clips scored, the grain
    metrics (None without grain clips) and the targets missed."""

    result: CheckResult
    head: str
    sources: list[str]
    clips: int
    grain: dict | None = None
    missed: list[str] = field(default_factory=list)

    def text(self, worst: int = 12) -> str:
        """The check as a text table: sources, ordered shares, the worst cases, the grain rows, the targets."""
        lines = [f"{len(self.sources)} held-out images, {self.clips} clips, head {self.head!r}", report(self.result, worst)]
        if self.grain is not None:
            from contrique_video.training.grain import report as grain_report

            lines.append(grain_report(self.grain))
        lines.append("targets: " + ("all met" if not self.missed else "; ".join(self.missed)))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Every score, the summary, the grain metrics and the targets missed, as JSON-ready values (NaN: None)."""
        def plain(v):
            if isinstance(v, dict):
                return {str(k): plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            if isinstance(v, (bool, np.bool_)):
                return bool(v)
            if isinstance(v, (int, np.integer)):
                return int(v)
            if isinstance(v, (float, np.floating)):
                return None if math.isnan(v) else float(v)
            return v

        return plain({"head": self.head, "sources": self.sources, "clips": self.clips,
                      "summary": self.result.summary(), "grain": self.grain, "missed": self.missed,
                      "rows": self.result.rows})

    def csv_rows(self) -> list[tuple[str, str, float]]:
        """The summary as (head, metric, value) rows for :func:`append_csv`."""
        s = self.result.summary()
        rows = [(self.head, f"stills.{k}", v) for k, v in s.items() if isinstance(v, (int, float))]
        rows += [(self.head, f"stills.ordered.{k}", v) for k, v in s["per_kind"].items()]
        if self.grain is not None:
            rows += [(self.head, f"grain_clips.{k}", v) for k, v in self.grain.items() if isinstance(v, (int, float))]
            rows += [(self.head, f"grain_clips.{k}.{g}", v) for k in ("cost", "cost_mean") for g, v in self.grain[k].items()]
        return rows


def degradation_check(plan: CheckPlan) -> CheckReport:
    """Score every ladder of ``plan``'s held-out sources and clips (and its grain clips) with its head and say
    which targets it misses. Still features are cached in ``plan.cache`` when given."""
    from contrique_video.training.degradation import load_pristine, pan_clip

    if plan.threads:
        import torch

        torch.set_num_threads(plan.threads)
    names = plan.source_names()
    sources = {n: load_pristine(n, plan.wallpapers, plan.size) for n in names}
    side = plan.size * 2 // 3 // 2 * 2
    clips = {n: pan_clip(sources[n], plan.clip_frames, side, step=max(1, (plan.size - side) // plan.clip_frames))
             for n in names[: plan.clips]}
    scorer = make_scorer(plan)
    t0 = time.perf_counter()
    log.info("scoring the ladders of %d sources and %d clips with head %r", len(sources), len(clips), scorer.head.name)
    try:
        result = run_check(scorer, sources, plan.kinds(), clips)
    finally:  # an interrupted check keeps the features it extracted
        if scorer.cache is not None:
            scorer.cache.save()
    log.info("stills and clips scored in %.0f s", time.perf_counter() - t0)
    grain_metrics = grain_scores(plan, scorer.head) if plan.grain else None
    return CheckReport(result, scorer.head.name, names, len(clips), grain_metrics,
                       targets_missed(result.summary(), bool(clips), grain_metrics))

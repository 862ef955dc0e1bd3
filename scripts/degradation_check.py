"""Degradation check: does the score fall as pristine images are damaged more?

Every distortion type of contrique_video.training.distortions at 5 levels, noise of several kinds (Gaussian,
colour, impulse, speckle, ffmpeg-like ``noise=alls=N``), CRF ladders (x264, x265, SVT-AV1 where PyAV has
them; CRF 18-51), down-then-up scaling, on the held-out pristine images (never used to fit a head), plus
short panning clips made from them (CRF ladders and temporal noise; a clip's score is the mean of its
frames). Prints the share of adjacent level pairs ordered correctly per type and overall, how many
levels score above their clean source, and the worst cases.

    # the built-in model and head
    python scripts/degradation_check.py --wallpapers /tmp/wp/x
    # a head fit on frozen ImageNet EfficientNet-Lite2 features (fit_ranked_head.py --features), without the wallpapers
    python scripts/degradation_check.py --features lite2/stages-meanstd --head runs/h_base.json

``--features`` takes ``lite2/stages-meanstd+nss`` for heads fit with ``fit_ranked_head.py --nss``, and
``--also CARD`` appends another model's features for heads fit with ``--also``; each extractor's rows are
cached in their own file beside ``--cache``.

``--wallpapers`` is the folder the Debian wallpaper packages were extracted to (see
scripts/prepare_pristine.py); without it only the held-out photos that ship with scikit-learn are used.
``--strict`` exits 1 when a target is missed (>= 97% of adjacent pairs ordered, no level more than
1 point above its clean source, every clip's CRF pairs falling in >= 95%).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contrique_video.errors import ContriqueError  # noqa: E402
from contrique_video.training import degradation as deg  # noqa: E402
from contrique_video.training import degradation_check as check  # noqa: E402

TARGET_ORDERED, TARGET_ABOVE_CLEAN, TARGET_CLIP_CRF = 0.97, 1.0, 0.95


def make_scorer(args) -> check.HeadScorer:
    """The check's scorer: a model with its head, or frozen Lite features (+ NSS, + other models' features)
    with --head. Each extractor's rows go to their own cache file beside ``--cache``, so stacked layouts
    reuse every row already extracted."""
    from contrique_video.models.head import resolve_head
    from contrique_video.models.layouts import NSS_SUFFIX
    from contrique_video.training.ranking import (
        FeatureCache,
        StackedFeatures,
        last_from_stages,
        lite_features,
        model_features,
        nss_rows,
    )

    def card(weights, head=None):
        extract, scorer = model_features(weights, head, args.threads)
        return extract, scorer.model_id, scorer

    post = None
    if args.also and not args.features:
        raise ContriqueError("--also goes with --features (a model's own head cannot read a stacked layout)")
    if args.features:
        if not args.head:
            raise ContriqueError("--features needs --head: a head fit on those features")
        variant, _, layout = args.features.partition("/")
        layout = layout or "stages-meanstd"
        nss = layout.endswith(NSS_SUFFIX)
        ext = lite_features(variant, "stages-meanstd")
        parts, head = [(ext, ext.name)], resolve_head(args.head)
        if nss:
            parts.append((nss_rows, "nss"))
        layout = layout.removesuffix(NSS_SUFFIX)
        if layout == "last" and (nss or args.also):
            raise ContriqueError("the last layout goes without +nss and --also (as fit_ranked_head.py fits it)")
        if layout == "last":
            # sliced out of stages-meanstd (the same numbers), so both layouts share one feature cache
            channels = ext.module.trunk.channels
            post = lambda row: last_from_stages(row[None], channels)[0]  # noqa: E731
        elif layout != "stages-meanstd":
            raise ContriqueError(f"unknown layout {args.features!r}: stages-meanstd, stages-meanstd+nss or last")
    else:
        extract, name, scorer = card(args.weights, args.head)
        parts, head = [(extract, name)], scorer.check_head()
    parts += [card(weights)[:2] for weights in args.also]

    if args.cache is None:
        cache = None
    else:
        caches = [(FeatureCache(args.cache if i == 0 else args.cache.with_name(f"{args.cache.stem}_{name.replace('/', '_')}.npz"),
                                f"{name}@{args.size}", every=50), extract) for i, (extract, name) in enumerate(parts)]
        cache = caches[0][0] if len(caches) == 1 else StackedFeatures(caches)
    extract = parts[0][0] if len(parts) == 1 else (lambda rgb: np.concatenate([ex(rgb) for ex, _ in parts]))
    if args.features:
        probe = extract(deg.crop_square(deg.skimage_image("astronaut"), 64))
        if head.dim != len(probe if post is None else post(probe)):
            raise ContriqueError(f"head {head.name!r} has {head.dim} weights, which do not match {args.features} features")
    return check.HeadScorer(extract, head, cache, post)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="model weights or card (default: the built-in model)")
    ap.add_argument("--head", default=None, help="head name or .json path (default: the model's own head)")
    ap.add_argument("--features", default=None, metavar="lite0|lite1|lite2[/LAYOUT]",
                    help="score with frozen ImageNet EfficientNet-Lite features and --head instead of a model")
    ap.add_argument("--also", action="append", default=[], metavar="CARD",
                    help="append another model's features to --features (for heads fit with fit_ranked_head.py --also); repeatable")
    ap.add_argument("--wallpapers", type=Path, default=None, help="extracted wallpaper packages (for those held-out photos)")
    ap.add_argument("--images", nargs="*", default=None, help="pristine sources (default: the held-out set)")
    ap.add_argument("--sharp", action="store_true", help="also the generated sharp-detail sources (degradation.HELDOUT_SHARP)")
    ap.add_argument("--grain", default=None, metavar="SOURCES",
                    help="also grain clips (contrique_video.training.grain) of these comma-separated held-out sources: "
                         "the grain curve and grainy x264 CRF ladders at 960x540 (tier 1; --grain-tiers for more), "
                         "with the built-in model; features cached in --grain-cache")
    ap.add_argument("--grain-tiers", default="1")
    ap.add_argument("--grain-cache", type=Path, default=Path("runs/grain_heldout.npz"))
    ap.add_argument("--types", default="all", help="'all', 'noise' or a comma-separated list of degradation types")
    ap.add_argument("--size", type=int, default=deg.SIZE, help="side of the square crops (default %(default)s)")
    ap.add_argument("--clips", type=int, default=3, help="clips made from the first N sources (default %(default)s)")
    ap.add_argument("--clip-frames", type=int, default=8)
    ap.add_argument("--cache", type=Path, default=None, help=".npz feature cache (reused across heads)")
    ap.add_argument("--json", type=Path, default=None, help="write every score and the summary here")
    ap.add_argument("--csv", type=Path, default=None, help="append the summary as (head, metric, value) rows here")
    ap.add_argument("--worst", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args(argv)
    if args.grain and (args.features or args.weights):
        ap.error("--grain scores clips with the built-in model's features: it goes without --features and --weights")
    try:
        import torch

        torch.set_num_threads(args.threads)
        names = args.images or [n for n in deg.HELDOUT if args.wallpapers or ":" in n] + (deg.HELDOUT_SHARP if args.sharp else [])
        sources = {n: deg.load_pristine(n, args.wallpapers, args.size) for n in names}
        kinds = None if args.types == "all" else list(deg.NOISE_TYPES) if args.types == "noise" else args.types.split(",")
        clip_side = args.size * 2 // 3 // 2 * 2
        clips = {n: deg.pan_clip(sources[n], args.clip_frames, clip_side, step=max(1, (args.size - clip_side) // args.clip_frames))
                 for n in names[: args.clips]}
        scorer = make_scorer(args)
        t0 = time.time()
        result = check.run_check(scorer, sources, kinds, clips, progress=False)
        if scorer.cache is not None:
            scorer.cache.save()
    except ContriqueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    s = result.summary()
    print(f"{len(sources)} held-out images, {len(clips)} clips, head {scorer.head.name!r}; {time.time() - t0:.0f} s")
    print(check.report(result, args.worst))
    if args.json:
        args.json.write_text(json.dumps({"summary": s, "rows": result.rows}, indent=1, default=str) + "\n")
    missed = []
    if not s["ordered_share"] >= TARGET_ORDERED:
        missed.append(f"ordered {100 * s['ordered_share']:.1f}% < {100 * TARGET_ORDERED:.0f}%")
    if not s["max_above_clean"] <= TARGET_ABOVE_CLEAN:
        missed.append(f"a level scores {s['max_above_clean']:+.2f} above its clean source")
    if clips and not s["min_clip_crf_share"] >= TARGET_CLIP_CRF:
        missed.append(f"a clip's CRF pairs fall in only {100 * s['min_clip_crf_share']:.0f}%")
    if args.grain:
        try:
            from contrique_video.training import grain
            from contrique_video.training.ranking import FeatureCache, model_features

            _, model = model_features(None, threads=args.threads)
            gcache = FeatureCache(args.grain_cache, model.model_id + "/clip-mean", every=5)
            for tier in (int(t) for t in args.grain_tiers.split(",")):
                for source in args.grain.split(","):
                    grain.build(grain.plan(source, tier), gcache, model.mean_feature,
                                lambda s: grain.pan(grain.source_image(s, args.wallpapers)))
            keys = sorted(k for k in gcache.rows if grain.Clip.parse(k).source in args.grain.split(","))
            gs = grain.metrics(dict(zip(keys, scorer.head.predict(np.stack([gcache.rows[k] for k in keys])).tolist())))
            print(grain.report(gs))
        except ContriqueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        missed += grain.missed(gs)
    print("targets: " + ("all met" if not missed else "; ".join(missed)))
    if args.csv:
        rows = [(scorer.head.name, f"stills.{k}", v) for k, v in s.items() if isinstance(v, (int, float))]
        rows += [(scorer.head.name, f"stills.ordered.{k}", v) for k, v in s["per_kind"].items()]
        if args.grain:
            rows += [(scorer.head.name, f"grain_clips.{k}", v) for k, v in gs.items() if isinstance(v, (int, float))]
            rows += [(scorer.head.name, f"grain_clips.{k}.{g}", v) for k in ("cost", "cost_mean") for g, v in gs[k].items()]
        check.append_csv(args.csv, rows, "python scripts/degradation_check.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())

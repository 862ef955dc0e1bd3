"""Fit a head that never rewards damage: CLIVE MOS plus ranking pairs from degraded pristine images.

    python scripts/fit_ranked_head.py --features lite2/stages-meanstd --wallpapers /tmp/wp/x \\
        --evaluate --out runs/lite2-ranked.json

Features come from frozen ImageNet EfficientNet-Lite (``--features VARIANT/LAYOUT``; ``last`` is sliced
out of ``stages-meanstd``, the same numbers) or any model the scorer loads (``--weights CARD``), so
the head can be refit on a fine-tuned encoder in one command. ``--nss`` appends the scorer's 36 NSS
features (layout ``+nss``) and ``--also CARD`` another model's features (Re-IQA's content + quality
encoders). Every extractor's rows are cached in their own file under ``--cache-dir`` and reused. The ranking pairs come from ``contrique_video.training.degradation.FIT`` (never the
held-out set of the degradation check): every type's level k+1 below level k and every level below
the clean source (see contrique_video.training.ranking.fit_ranked for the loss). ``--authentic N`` adds N
clive-train images as sources, degraded only by the types that harm any photo
(``degradation.ladder_kinds(authentic=True)``); the protocol's splits drop the pairs of their test images.

``--tune`` measures each (lam_rank, margin) on the CLIVE protocol (SRCC on the test parts of the first
``--tune-splits`` of the 10 splits) and on pair ordering of *unseen sources* (the FIT sources in two halves, fit on one, count on
the other); ``--evaluate`` gives the full protocol (10 random 80/20 splits, medians) for plain RidgeCV
and the constrained head on the same splits, plus the log Laplacian variance baseline; for a card with a quality
branch (``--weights``), also both heads on its trunk's columns alone (the same backbone's frozen ImageNet features),
on the same splits and pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contrique_video.errors import ContriqueError, ModelError  # noqa: E402
from contrique_video.models.head import LinearHead  # noqa: E402
from contrique_video.models.layouts import NSS_SUFFIX  # noqa: E402
from contrique_video.training import degradation as deg  # noqa: E402
from contrique_video.training import fit as fitmod  # noqa: E402
from contrique_video.training import ranking as rk  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clive-train"
AUTHENTIC = "authentic:"  # ranking sources cut from clive-train images (only damage that harms any photo)


def extractor(args):
    """(extract, cache tag, cache key = the extractor's id, the head's feature id, slice) for the features."""
    if args.weights:
        extract, tag, mid = card_extractor(args.weights)
        return extract, tag, mid, mid, None
    variant, _, layout = args.features.partition("/")
    layout = layout or "stages-meanstd"
    ext = rk.lite_features(variant, "stages-meanstd")
    tag = f"{variant}_sm"
    if layout == "last":  # sliced out of the cached stages-meanstd rows: the same numbers, no second pass
        channels = ext.module.trunk.channels
        return ext, tag, ext.name, f"efficientnet-{variant}-imagenet/last", lambda X: rk.last_from_stages(X, channels)
    if layout != "stages-meanstd":
        raise SystemExit(f"unknown layout {layout!r}: stages-meanstd or last")
    return ext, tag, ext.name, ext.name, None


def card_extractor(card: str):
    """(extract, cache tag, cache key) of any model the scorer loads: its frame features, NSS included if it has them."""
    extract, scorer = rk.model_features(card)
    return extract, scorer.model_id.replace("/", "_"), scorer.model_id


def store(args, part: str, tag: str, name: str, extract):
    """Where the rows of ``part`` (clive, fit) are cached: one file per extractor (--nss and --also append
    theirs), so a stacked layout reuses every row already extracted."""
    folder = Path(args.cache_dir)
    parts = [(rk.FeatureCache(folder / f"feats_{part}_{tag}.npz", name, every=40), extract)]
    if args.nss:
        parts.append((rk.FeatureCache(folder / f"feats_{part}_nss.npz", "nss", every=200), rk.nss_rows))
    for also_extract, also_tag, also_name in args.also_extractors:
        parts.append((rk.FeatureCache(folder / f"feats_{part}_{also_tag}.npz", also_name, every=40), also_extract))
    return parts[0][0] if len(parts) == 1 else rk.StackedFeatures(parts)


def clive_features(args, extract, tag, name):
    table = fitmod.read_mos(args.mos)
    cache = store(args, "clive", tag, name, extract)
    X = [cache.get(img, lambda img=img: rk.read_rgb(Path(args.images) / img), extract) for img in table["image"]]
    cache.save()
    return np.stack(X).astype(np.float64), table["mos"].to_numpy(np.float64)


def load_source(args, name: str) -> np.ndarray:
    """A ranking source: a pristine photo, or an ``authentic:IMAGE`` of clive-train cut the same way."""
    if name.startswith(AUTHENTIC):
        return deg.crop_square(rk.read_rgb(Path(args.images) / name[len(AUTHENTIC):]))
    return deg.load_pristine(name, args.wallpapers)


def authentic_sources(table, n: int) -> list[str]:
    """``n`` clive-train images (a fixed random choice) whose degraded copies become ranking pairs."""
    images = table["image"].tolist()
    return [AUTHENTIC + images[i] for i in np.random.default_rng(1).permutation(len(images))[:n]]


def ladder_rows(args, extract, tag, name, sources):
    """Feature rows of every level of every ladder of ``sources``, by ``source|kind|level``."""
    cache = store(args, "fit", tag, name, extract)
    rows = {}
    for src_name in sources:
        kinds = [k for k in deg.ladder_kinds(authentic=src_name.startswith(AUTHENTIC)) if not args.types or k in args.types]
        lads: dict = {}  # the source's ladders, made only if some row is missing from the cache

        def ladder(kind, src_name=src_name, kinds=kinds, lads=lads):
            if not lads:
                lads.update({lad.kind: lad for lad in deg.ladders(load_source(args, src_name), src_name, kinds)})
            return lads[kind]

        for lad in deg.ladders(np.zeros((64, 64, 3), np.uint8), src_name, kinds):
            for level in range(lad.n):
                key = f"{src_name}|{lad.kind}|{level}"
                rows[key] = cache.get(key, lambda kind=lad.kind, level=level: ladder(kind).make(level), extract)
        print(f"ladders of {src_name}: done", flush=True)
    cache.save()
    return rows


def trunk_columns(weights: str) -> np.ndarray | None:
    """Columns of a model's features that are its frozen trunk's (both scales) when a quality branch sits
    beside the trunk's statistics; None for any other model (or one only the scorer loads, such as ONNX)."""
    from contrique_video.models import load_model

    try:
        model = load_model(weights)
    except ModelError:
        return None
    if getattr(model, "branch", None) is None or not model.trunk_dim:
        return None
    return np.array(model.trunk_columns())


def report(args, X, y, rd, fit_part, part: str = "") -> None:
    """The protocol's medians for a plain RidgeCV head and the ranked head on features ``X`` (pairs ``rd``)."""
    fitters = {"ridge": lambda Xt, yt, train: rk.fit_ridge_std(Xt, yt),
               "ranked": lambda Xt, yt, train: rk.fit_ranked(Xt, yt, fit_part(train, data=rd), args.lam_rank, args.margin)}
    if args.skip_ridge:
        fitters.pop("ridge")
    if not len(rd.pairs):  # MOS only (--sources 0): the ranked head would be RidgeCV again, slower
        fitters.pop("ranked")
    for label, fitter in fitters.items():
        r = fitmod.evaluate(X, y, splits=args.splits, fitter=fitter, fitter_takes_train=True)
        full = fitter(X, y, np.arange(len(y)))
        print(f"  {part}{label:<8} SRCC {r['srcc']:.3f}  PLCC {r['plcc']:.3f}  (all-data fit: pair ordering "
              f"{100 * rk.pair_accuracy(full.predict(rd.X), rd):.1f}% adjacent, "
              f"{100 * rk.pair_accuracy(full.predict(rd.X), rd, False):.1f}% all, on the fit sources)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", default="lite2/stages-meanstd")
    ap.add_argument("--weights", default=None, help="a model card or checkpoint instead of --features")
    ap.add_argument("--mos", default=str(SHARED / "mos.csv"))
    ap.add_argument("--images", default=str(SHARED / "images"))
    ap.add_argument("--wallpapers", type=Path, default=None)
    ap.add_argument("--sources", type=int, default=len(deg.FIT), help="use the first N of degradation.FIT")
    ap.add_argument("--smooth", type=int, default=0, help="also the first N of degradation.FIT_SMOOTH (flat crops)")
    ap.add_argument("--nss", action="store_true", help="append the scorer's 36 NSS features (layout +nss)")
    ap.add_argument("--also", action="append", default=[], metavar="CARD",
                    help="append another model's features (Re-IQA's content + quality encoders); repeatable")
    ap.add_argument("--authentic", type=int, default=0, help="also N clive-train images as ranking sources, "
                    "degraded only by types that harm any photo; a protocol split drops its test images' pairs")
    ap.add_argument("--types", type=lambda v: v.split(","), default=None,
                    help="only these degradation types (comma-separated; default: all)")
    ap.add_argument("--cache-dir", default="runs")
    ap.add_argument("--lam-rank", type=float, default=1.0)
    ap.add_argument("--margin", type=float, default=1.0)
    ap.add_argument("--tune", default=None, metavar="LAMS:MARGINS", help="e.g. 0,0.3,1,3:0.5,2")
    ap.add_argument("--tune-splits", type=int, default=3, help="CLIVE splits per --tune setting")
    ap.add_argument("--evaluate", action="store_true")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--skip-ridge", action="store_true", help="--evaluate only the constrained head")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--ridge-out", type=Path, default=None, help="also save the plain RidgeCV head here")
    ap.add_argument("--name", default="clive-ranked", help="the --out head's name")
    ap.add_argument("--ridge-name", default=None, help="the --ridge-out head's name (default: NAME-ridge)")
    ap.add_argument("--feature-id", default=None, help="the head's 'features' field (default: the extractor's id), "
                    "e.g. the model card id a built-in model checks heads against")
    args = ap.parse_args()
    if args.authentic < 0 or not 0 <= args.sources <= len(deg.FIT) or not 0 <= args.smooth <= len(deg.FIT_SMOOTH):
        ap.error(f"--authentic takes N >= 0 (at most every MOS image is used), --sources 0-{len(deg.FIT)}, "
                 f"--smooth 0-{len(deg.FIT_SMOOTH)}")
    import torch

    torch.set_num_threads(1)
    extract, tag, cache_key, feat_id, cut = extractor(args)
    if (args.nss or args.also) and (args.weights or cut is not None):
        raise SystemExit("--nss and --also go with --features VARIANT/stages-meanstd (a card says itself whether it has NSS)")
    args.also_extractors = [card_extractor(card) for card in args.also]
    if args.also and args.nss:
        raise SystemExit("--also goes without --nss (a card with NSS appends its own block)")
    if args.nss:
        feat_id += NSS_SUFFIX
    feat_id = args.feature_id or "+".join([feat_id, *(name for _, _, name in args.also_extractors)])
    X, y = clive_features(args, extract, tag, cache_key)
    table = fitmod.read_mos(args.mos)
    pristine = deg.FIT[: args.sources] + (deg.FIT_SMOOTH[: args.smooth] if args.smooth else [])
    authentic = authentic_sources(table, args.authentic)
    sources = pristine + authentic
    row_of = {AUTHENTIC + img: i for i, img in enumerate(table["image"])}

    def fit_part(train, keep=pristine, data=None):
        """The pair set (of ``data``, default all features) a fit on CLIVE rows ``train`` may use: ``keep`` plus
        the authentic sources among them."""
        inside = set(train.tolist())
        return (rd if data is None else data).subset(list(keep) + [s for s in authentic if row_of[s] in inside])
    if sources:
        rd = rk.rank_data(ladder_rows(args, extract, tag, cache_key, sources))
    else:  # MOS only (a plain ridge head); an empty pair set
        rd = rk.RankData(np.zeros((1, X.shape[1])), np.zeros((0, 2), np.int64), np.array([], str), np.array([], str),
                         np.array([], bool))
    if cut is not None:
        X, rd = cut(X), rk.RankData(cut(rd.X), rd.pairs, rd.kinds, rd.sources, rd.adjacent)
    print(f"{feat_id}: {X.shape[1]} features; CLIVE {len(y)} images; ranking {rd.counts()}", flush=True)

    if args.tune:
        lams, margins = ([float(v) for v in part.split(",")] for part in args.tune.split(":"))
        halves = [pristine[0::2], pristine[1::2]]
        splits = list(fitmod.protocol_splits(len(y), args.tune_splits))
        alphas = [rk.fit_ridge_std(X[train], y[train]).info["alpha"] for _, train in splits]
        print(f"{'lam_rank':>8} {'margin':>6} {'SRCC':>6} {'unseen pairs':>12} {'clean>all':>9} {'s':>5}")
        for lam in lams:
            for margin in margins if lam > 0 else margins[:1]:
                t0 = time.time()
                srcc, acc, acc_all = [], [], []
                for (test, train), alpha in zip(splits, alphas):
                    for fit_half, held_half in (halves, halves[::-1]):
                        model = rk.fit_ranked(X[train], y[train], fit_part(train, fit_half), lam, margin, alpha=alpha)
                        srcc.append(fitmod.correlations(model.predict(X[test]), y[test])["srcc"])
                        held = rd.subset(held_half)
                        s = model.predict(rd.X)
                        acc.append(rk.pair_accuracy(s, held))
                        acc_all.append(rk.pair_accuracy(s, held, adjacent_only=False))
                print(f"{lam:8g} {margin:6g} {np.median(srcc):6.3f} {100 * np.mean(acc):11.1f}% "
                      f"{100 * np.mean(acc_all):8.1f}% {time.time() - t0:5.0f}", flush=True)

    if args.evaluate:
        keep = trunk_columns(args.weights) if args.weights else None
        print(f"protocol: {args.splits} random 80/20 splits of {len(y)} CLIVE images (seed 0), medians")
        report(args, X, y, rd, fit_part)
        if keep is not None:  # the same backbone's frozen ImageNet features, on the same splits and pairs
            report(args, X[:, keep], y, rk.RankData(rd.X[:, keep], rd.pairs, rd.kinds, rd.sources, rd.adjacent),
                   fit_part, "trunk alone: ")
        lap = np.array([fitmod.laplacian_variance(rk.read_rgb(Path(args.images) / i))
                        for i in fitmod.read_mos(args.mos)["image"]])[:, None]
        r = fitmod.evaluate(lap, y, splits=args.splits, fitter=rk.fit_ridge_std)
        print(f"  {'log Laplacian variance':<8} SRCC {r['srcc']:.3f}  PLCC {r['plcc']:.3f}", flush=True)

    def save(model, path, name, kind, lam, margin):
        raw = model.predict(X)
        params = rk.fit_logistic(raw, y)
        head = LinearHead(
            weights=model.weights, intercept=model.intercept, name=name, features=feat_id,
            trained_on=f"CLIVE (clive-train, {len(y)} images)" + (f" + {rd.counts()['pairs']} ranking pairs" if lam else ""),
            scale="MOS", range=(0.0, 100.0), higher_is_better=True,
            extra={"n_features_in": int(X.shape[1]), "layout": "[features(full) | features(half)]" + (" | nss(36)" if args.nss else "")
                   + "".join(f" | {name}" for _, _, name in args.also_extractors)},
            mapping={"kind": "logistic", "params": params},
            fit={
                "method": kind, "mos": {"data": "clive-train mos.csv", "images": int(len(y))},
                "ranking": None if not lam else {
                    **rd.counts(), "sources": list(sources), "size": deg.SIZE,
                    "pairs_per": "adjacent levels + clean vs every level, per (source, type)",
                    "types": sorted(set(rd.kinds.tolist())),
                },
                "loss": {"mse": "mean((z w + b - mos)^2) / var(mos)",
                         "rank": "lam_rank * mean(relu(margin - (s_better - s_worse))^2) / margin^2",
                         "l2": "alpha / (n var(mos)) * |w|^2", "lam_rank": lam, "margin": margin,
                         "alpha": model.info["alpha"]},
                "standardize": "features z-scored with the CLIVE statistics (folded into the weights)",
                "mapping": "4-parameter logistic least-squares fit of MOS on the raw value (all CLIVE images)",
                "pair_ordering_fit_sources": rk.pair_accuracy(model.predict(rd.X), rd),
            },
        )
        head.save(path)
        print(f"wrote {path} ({name}: {X.shape[1]} {feat_id} features; logistic {np.round(params, 4).tolist()})")

    if args.ridge_out:
        save(rk.fit_ridge_std(X, y), args.ridge_out, args.ridge_name or f"{args.name}-ridge", "RidgeCV on standardised features", 0.0, 0.0)
    if args.out:
        model = rk.fit_ranked(X, y, rd, args.lam_rank, args.margin)
        save(model, args.out, args.name, "fit_ranked (L-BFGS)", args.lam_rank, args.margin)


if __name__ == "__main__":
    try:
        main()
    except ContriqueError as exc:  # bad weights, images or caches: one line, not a traceback
        sys.exit(f"error: {exc}")

"""Fit a head on the shipped model's features that never rewards an encoder's removal of grain.

    python experiments/fit_grain_head.py --clips runs/grain_fit.npz --heldout runs/grain_heldout.npz \\
        --stills runs/feats_fit_builtin-v3.npz --clive runs/feats_clive_builtin-v3.npz --evaluate --out H.json

Ridge on clive-train MOS plus squared-hinge ranking terms (contrique_video.training.ranking.fit_ranked):
the still-image distortion ladders of the FIT photos (clive-v3's pairs, ``--lam-stills``/``--margin-stills``)
and, from grain clips of FIT sources only (contrique_video.training.grain, built by
experiments/grain_ladders.py): each lossless source above its encodes, CRF c above c + 8, weaker grain
above stronger, and grain costing at most ``--cap12 * N / 12`` points (an upper bound, so grain is a
slope, not a cliff). Features come from the caches those tools write (nothing is extracted here).

``--branch-scorer RUN/last.pt`` (rule 18 of results/builtin-v4-selection.md): the branch block of each scale enters
the fit only through the branch's own ranking scorer (train-branch's linear output, kept in the run's last.pt), one
feature per scale, so the head can use the branch only in the direction its ranking loss ordered; the head written
is expanded back to the full features (a plain linear head the product reads unchanged). ``--branch-scorer-mode
add`` (rule 19) keeps the branch's own columns and adds the scorer's value beside them.

``--evaluate`` runs the CLIVE protocol (10 random 80/20 splits, ``protocol_splits``, medians) for RidgeCV,
clive-v3's recipe (stills only) and this head on the same splits, and the grain metrics
(``grain.metrics``) of the shipped heads and this one on the held-out clips; ``--csv`` appends the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contrique_video.models.head import LinearHead, builtin_heads, resolve_head  # noqa: E402
from contrique_video.training import fit as fitmod  # noqa: E402
from contrique_video.training import grain  # noqa: E402
from contrique_video.training.degradation_check import append_csv  # noqa: E402
from contrique_video.training import ranking as rk  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clive-train"


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return dict(zip(z["keys"].tolist(), z["features"].astype(np.float64)))


def still_pairs(rows: dict[str, np.ndarray]) -> rk.RankData:
    """clive-v3's still pairs from the cached FIT ladders, complete ladders only (a run may have been cut)."""
    from contrique_video.training.degradation import ladder_kinds, ladders

    n_levels = {lad.kind: lad.n for lad in ladders(np.zeros((64, 64, 3), np.uint8), "x", ladder_kinds())}
    by: dict = {}
    for k in rows:
        src, kind, level = k.rsplit("|", 2)
        by.setdefault((src, kind), set()).add(int(level))
    keep = {k: v for k, v in rows.items() if len(by[tuple(k.rsplit("|", 2)[:2])]) == n_levels.get(k.rsplit("|", 2)[1])}
    return rk.rank_data(keep)


def clip_groups(keys: list[str], args) -> list[tuple[str, list[tuple[str, str]], np.ndarray, float]]:
    """The clip pair terms as (name, [(better key, worse key)], margins, lam), for this linear fit and the
    hidden-layer fits of experiments/fit_mlp_head.py."""
    groups: dict[str, list] = {}
    for better, worse, kind, _ in grain.pairs(keys):
        if kind == "crf" and grain.Clip.parse(better).grain == "clean" and args.margin_crf_clean is not None:
            kind = "crf-clean"  # a clean CRF step may be asked to cost more than a grainy one
        groups.setdefault(kind, []).append((better, worse))
    margins = {"source": args.margin_source, "crf": args.margin_crf, "crf-clean": args.margin_crf_clean,
               "grain": args.margin_grain}
    lams = {"source": args.lam_source, "crf": args.lam_crf, "crf-clean": args.lam_crf, "grain": args.lam_grain}
    out = [(kind, pr, np.full(len(pr), margins[kind]), lams[kind]) for kind, pr in groups.items()]
    bounds = grain.upper_bounds(keys, args.cap12)
    if bounds and args.lam_cap > 0:
        out.append(("cap", [(g, c) for g, c, _ in bounds], np.array([m for _, _, m in bounds]), args.lam_cap))
    return out


def clip_terms(rows: dict[str, np.ndarray], args) -> list[rk.PairTerm]:
    return [rk.PairTerm(np.stack([rows[b] - rows[w] for b, w in pr]), margins, lam, 1.0, name)
            for name, pr, margins, lam in clip_groups(sorted(rows), args)]


def head_of(model: rk.RankedFit, X: np.ndarray, y: np.ndarray, name: str, fit: dict | None = None,
            features: str = "builtin-v3") -> LinearHead:
    params = rk.fit_logistic(model.predict(X), y)
    return LinearHead(weights=model.weights, intercept=model.intercept, name=name, features=features,
                      trained_on="", scale="MOS", range=(0.0, 100.0), higher_is_better=True,
                      mapping={"kind": "logistic", "params": params}, fit=fit,
                      layout="efficientnet-lite2/stages-meanstd-quality")


def scorer_projection(last_pt: Path, dim: int, keep_branch: bool = False):
    """(project, expand): ``project`` maps features (rows of ``dim``: [trunk | branch] per scale) to the trunk's
    columns (with ``keep_branch``, every column) then the scorer's value at each scale (scorer . branch); ``expand``
    maps a weight vector of that space back to ``dim``."""
    import pickle

    import torch

    try:
        w = torch.load(last_pt, map_location="cpu", weights_only=True)["scorer"]["weight"].double().numpy().reshape(-1)
    except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as e:
        raise SystemExit(f"--branch-scorer {last_pt}: not a train-branch run's last.pt with a scorer ({type(e).__name__})")
    half = dim // 2
    trunk = half - w.size
    if trunk <= 0 or dim % 2:
        raise SystemExit(f"{last_pt}: a scorer of {w.size} weights does not fit features of {dim}")
    kept = np.r_[0:dim] if keep_branch else np.r_[0:trunk, half:half + trunk]

    def project(F: np.ndarray) -> np.ndarray:
        F = np.atleast_2d(F)
        return np.concatenate([F[:, kept], F[:, trunk:half] @ w[:, None], F[:, half + trunk:] @ w[:, None]], axis=1)

    def expand(v: np.ndarray) -> np.ndarray:
        out = np.zeros(dim)
        out[kept] = v[:-2]
        out[trunk:half] += v[-2] * w
        out[half + trunk:] += v[-1] * w
        return out

    return project, expand


def clip_scores(head: LinearHead, rows: dict[str, np.ndarray]) -> dict[str, float]:
    keys = sorted(rows)
    return dict(zip(keys, head.predict(np.stack([rows[k] for k in keys])).tolist()))


def show(label: str, m: dict) -> str:
    cost = " ".join(f"{g}={v:.1f}" for g, v in m["cost"].items())
    return (f"{label:<14} rise grainy {m['max_rise_grainy']:+6.2f} ({m['grainy_steps_rising_1']}/{m['grainy_steps']} >1)"
            f"  rise clean {m['max_rise_clean']:+6.2f} ordered {100 * m['clean_ordered']:5.1f}%"
            f"  above src {m['max_above_source']:+6.2f} ({m['encodes_above_source_1']} >1)  cost@CRF16 max: {cost}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clive", type=Path, default=Path("runs/feats_clive_builtin-v3.npz"))
    ap.add_argument("--stills", type=Path, default=Path("runs/feats_fit_builtin-v3.npz"),
                    help="the still ladders of the FIT sources (fit_ranked_head.py's cache)")
    ap.add_argument("--extra-stills", type=Path, action="append", default=[],
                    help="more still ladders of FIT sources in the same pair term (experiments/noise_ladders.py --types)")
    ap.add_argument("--noise-stills", type=Path, action="append", default=[],
                    help="noise ladders of flat crops, grey-level photos and product shots (experiments/noise_ladders.py): "
                         "their own pair term (--lam-noise, --margin-noise)")
    ap.add_argument("--lam-noise", type=float, default=0.0)
    ap.add_argument("--margin-noise", type=float, default=5.0)
    ap.add_argument("--clips", type=Path, action="append", default=[], help="grain clip caches of FIT sources")
    ap.add_argument("--heldout", type=Path, action="append", default=[], help="grain clip caches of held-out sources")
    ap.add_argument("--mos", type=Path, default=SHARED / "mos.csv")
    ap.add_argument("--lam-stills", type=float, default=1.0)
    ap.add_argument("--margin-stills", type=float, default=30.0)
    ap.add_argument("--lam-source", type=float, default=1.0)
    ap.add_argument("--margin-source", type=float, default=1.0)
    ap.add_argument("--lam-crf", type=float, default=1.0)
    ap.add_argument("--margin-crf", type=float, default=1.0)
    ap.add_argument("--margin-crf-clean", type=float, default=None,
                    help="margin of the CRF steps of clean clips (default: --margin-crf)")
    ap.add_argument("--lam-grain", type=float, default=0.3)
    ap.add_argument("--margin-grain", type=float, default=1.0)
    ap.add_argument("--lam-cap", type=float, default=1.0)
    ap.add_argument("--cap12", type=float, default=12.0, help="grain N may cost at most CAP12 * N / 12 raw points")
    ap.add_argument("--half", type=int, choices=(0, 1), default=None,
                    help="tuning: fit on every other clip source (0: the 1st, 3rd, ...; 1: the 2nd, ...) and report the "
                         "others as unseen (held-out clips are not shown)")
    ap.add_argument("--evaluate", action="store_true")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--recipes", default="ridge,clive-v3,new", help="which fits --evaluate runs on the protocol's splits")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--name", default="clive-v4")
    ap.add_argument("--features", default="builtin-v3", help="the id of the model the feature caches come from")
    ap.add_argument("--csv", type=Path, default=None, help="append result rows here")
    ap.add_argument("--branch-scorer", type=Path, default=None,
                    help="a train-branch run's last.pt: the fit sees each scale's branch block only through its scorer")
    ap.add_argument("--branch-scorer-mode", choices=("only", "add"), default="only",
                    help="only: the branch through its scorer alone (rule 18); add: the scorer beside the branch's "
                         "own columns (rule 19: the fit hardly used it)")
    args = ap.parse_args()

    table = fitmod.read_mos(args.mos)
    clive = load(args.clive)
    X = np.stack([clive[i] for i in table["image"]])
    y = table["mos"].to_numpy(np.float64)
    still_rows = load(args.stills)
    for p in args.extra_stills:
        still_rows.update(load(p))
    rd = still_pairs(still_rows) if args.lam_stills > 0 else None
    noise_rows: dict = {}
    for p in args.noise_stills:
        noise_rows.update(load(p))
    noise = still_pairs(noise_rows) if noise_rows and args.lam_noise > 0 else None
    rows: dict = {}
    for p in args.clips:
        rows.update(load(p))
    unseen: dict = {}
    if args.half is not None:
        order = sorted({grain.Clip.parse(k).source for k in rows})
        keep = set(order[args.half::2])
        unseen = {k: v for k, v in rows.items() if grain.Clip.parse(k).source not in keep}
        rows = {k: v for k, v in rows.items() if grain.Clip.parse(k).source in keep}
        args.heldout = []
    terms = clip_terms(rows, args) if rows else []
    if noise is not None:  # noise on flat crops and grey-level photos: damage however little detail it hides
        D = noise.X[noise.pairs[:, 0]] - noise.X[noise.pairs[:, 1]]
        terms.append(rk.PairTerm(D, np.full(len(D), args.margin_noise), args.lam_noise, args.margin_noise, "noise"))
    print(f"CLIVE {len(y)}; stills {rd.counts() if rd else None}; clip pairs "
          + ", ".join(f"{t.name} {len(t.margins)}" for t in terms), flush=True)
    project = expand = None
    if args.branch_scorer:  # the new recipe's data in the scorer's space; baselines and checks keep the features
        project, expand = scorer_projection(args.branch_scorer, X.shape[1], args.branch_scorer_mode == "add")
        rd_new = dataclasses.replace(rd, X=project(rd.X)) if rd else None
        terms = [dataclasses.replace(t, diffs=project(t.diffs)) for t in terms]
    else:
        rd_new = rd
    X_new = project(X) if project else X
    alpha = rk.fit_ridge_std(X_new, y).info["alpha"]

    def fit_new(Xt, yt, alpha=None):
        return rk.fit_ranked(Xt, yt, rd_new, args.lam_stills, args.margin_stills, alpha=alpha, terms=terms)

    model = fit_new(X_new, y, alpha)
    if expand:
        scorer_weights = [float(model.weights[-2]), float(model.weights[-1])]
        print(f"scorer weights (full, half scale): {scorer_weights[0]:+.4g} {scorer_weights[1]:+.4g}", flush=True)
        model = rk.RankedFit(expand(model.weights), model.intercept, model.info)
    results = []  # (head, metric, value)
    # the shipped heads fit on these features, to compare with (none for another model's caches)
    heads = {n: h for n in builtin_heads()
             if (h := resolve_head(n)).features == args.features and h.weights.size == X.shape[1]}
    new = head_of(model, X, y, args.name, features=args.features)
    heads[args.name] = new
    fit_scores = clip_scores(new, rows) if rows else {}
    if fit_scores:
        print(show("fit clips", grain.metrics(fit_scores)))
    if unseen:
        print(show("unseen half", grain.metrics(clip_scores(new, unseen))))
        for label, head in list(heads.items())[:-1]:
            print(show(f"  {label}", grain.metrics(clip_scores(head, unseen))))
    held: dict = {}
    for p in args.heldout:
        held.update(load(p))
    for label, head in heads.items():
        if held:
            m = grain.metrics(clip_scores(head, held))
            print(show(label, m), flush=True)
            for k, v in m.items():
                if isinstance(v, dict):
                    results += [(label, f"heldout_clips.{k}.{g}", val) for g, val in v.items()]
                else:
                    results.append((label, f"heldout_clips.{k}", v))
    if args.evaluate:
        out = {}
        from contrique_video.training.degradation import FIT

        rd_v3 = rd.subset(FIT[:10]) if rd else None  # clive-v3's own pairs: its ten sources, however many are cached
        recipes = {"ridge": ("ridge (clive recipe)", lambda Xt, yt: rk.fit_ridge_std(Xt, yt)),
                   "clive-v3": ("clive-v3 recipe", lambda Xt, yt: rk.fit_ranked(Xt, yt, rd_v3, 1.0, 30.0)),
                   "new": (f"{args.name} recipe", lambda Xt, yt: fit_new(Xt, yt))}
        for key in args.recipes.split(","):
            label, fitter = recipes[key]
            r = fitmod.evaluate(X_new if key == "new" else X, y, splits=args.splits, fitter=fitter)
            out[label] = r
            print(f"CLIVE protocol {label:<22} SRCC {r['srcc']:.4f}  PLCC {r['plcc']:.4f}", flush=True)
            results += [(label, "clive_median_srcc", r["srcc"]), (label, "clive_median_plcc", r["plcc"])]
    if args.csv:
        append_csv(args.csv, results, "python " + " ".join(sys.argv))
    if args.out:
        new.fit = {
            "method": "fit_ranked (L-BFGS) with clip pair terms",
            "command": "python " + " ".join(sys.argv),
            "mos": {"data": "clive-train mos.csv", "images": int(len(y))},
            "still_pairs": rd.counts() if rd else None,
            "still_loss": {"lam_rank": args.lam_stills, "margin": args.margin_stills},
            "clip_pairs": {t.name: int(len(t.margins)) for t in terms},
            "clip_loss": {"source": [args.lam_source, args.margin_source], "crf": [args.lam_crf, args.margin_crf],
                          **({"crf-clean": [args.lam_crf, args.margin_crf_clean]} if args.margin_crf_clean is not None else {}),
                          "grain": [args.lam_grain, args.margin_grain], "cap": [args.lam_cap, -args.cap12],
                          "form": "lam * mean(relu(margin - (s_better - s_worse))^2), margins in raw points; "
                                  "cap: (grainy, clean) pairs with margin -CAP12*N/12"},
            "noise_pairs": noise.counts() if noise else None,
            "noise_loss": {"lam": args.lam_noise, "margin": args.margin_noise},
            "clip_sources": sorted({grain.Clip.parse(k).source for k in rows}),
            "alpha": alpha,
            **({"branch_scorer": {"file": str(args.branch_scorer), "mode": args.branch_scorer_mode,
                                 "weights_full_half": scorer_weights}}
               if expand else {}),
            "mapping": "4-parameter logistic least-squares fit of MOS on the raw value (all CLIVE images)",
        }
        new.trained_on = (f"CLIVE (clive-train, {len(y)} images) + {rd.counts()['pairs'] if rd else 0} still ranking pairs"
                          f" + {sum(len(t.margins) for t in terms if t.name != 'noise')} grain clip pairs"
                          + (f" + {noise.counts()['pairs']} noise pairs on flat crops and grey-level photos" if noise else ""))
        new.save(args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Does a small non-linear head beat the linear recipe on its misses, without losing what it meets? (issue 30)

    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/fit_mlp_head.py --cache /work/main/runs \\
        --heldout-cache runs --evaluate --out runs/clive-v6.json

The head is ``f(x) = base(x) + a . u + b + v . tanh(W u + c)``: ``base`` is the linear recipe (clive-v5's and clive-v6's: the linear
ridge + ranking fit of experiments/fit_grain_head.py, refit on the same data), ``u`` the ``dims`` leading
principal directions of the standardised features (CLIVE training rows and every ranking row), scaled so a row's
``u`` has unit mean square norm, and the tanh layer has ``hidden`` units (``--configs base:dims:hidden:decay:lin``). Base ``none`` drops ``base`` (the
linear part then lives in the ``u`` space alone). The loss is the linear recipe's: MSE to CLIVE MOS / var(MOS) plus
the same squared-hinge pair terms (same pairs, margins and weights: still ladders of the FIT photos, noise
ladders, grain clips) plus a weight decay (see :func:`fit_mlp`); full-batch L-BFGS in float64,
fixed seeds, one thread.

``--evaluate``: the CLIVE protocol (10 random 80/20 splits, ``protocol_splits``, medians of SRCC/PLCC) for RidgeCV,
the linear recipe and every ``--configs`` head on the same splits. ``--half 0|1``: tuning without held-out sources
(fit on every other FIT source, report ranking on the others). The final fit (all CLIVE) is scored on the
held-out grain clips (``grain.metrics``), its own training pairs (inverted, short of their margin), the held-out still damage check (levels above clean, adjacent ordering,
from the degradation check's feature cache), the sample's mean feature and libvmaf agreement (vmaf_check.py's
features.npz), next to the shipped heads fit on the same model's features.

The recipe's terms are V5 (clive-v5's, which clive-v6 kept) on the clip caches ``--clips`` and noise ladders
``--noise`` (names in ``--cache``); ``--set KEY=VALUE`` changes one of V5 (e.g. ``--set lam_noise=3``), and
``--heldout`` names the held-out clip caches to report, each on its own rows.

``--extra-stills`` / ``--extra-noise`` (caches of experiments/noise_ladders.py, FIT sources only) add a linear
``--extra-name`` recipe: the linear recipe with those ladders' pairs in its stills / noise terms, on the same
splits; ``--configs ''`` runs no MLP. ``--heads`` adds head JSONs (e.g. that recipe written by fit_grain_head.py)
to the final checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import fit_grain_head as fg  # noqa: E402

from contrique_video.models.head import builtin_heads, resolve_head  # noqa: E402
from contrique_video.training import fit as fitmod  # noqa: E402
from contrique_video.training import grain  # noqa: E402
from contrique_video.training import ranking as rk  # noqa: E402
from contrique_video.training.degradation import FIT  # noqa: E402

# the linear recipe's loss: clive-v5's (step 3 of experiments/grain_results.sh), kept by clive-v6
V5 = dict(lam_stills=1.0, margin_stills=10.0, lam_noise=1.0, margin_noise=5.0, lam_source=3.0, margin_source=1.0,
          lam_crf=3.0, margin_crf=1.0, lam_grain=1.0, margin_grain=1.0, lam_cap=3.0, cap12=8.0)
CLIPS = ("f_grain_fit", "f_grain_fit2a", "f_grain_fit2b", "f_grain_fit3", "f_grain_fit4")


@dataclass
class Group:
    """One pair term on the ranking rows: f(R[ib]) - f(R[iw]) >= margin, weight ``coef`` per squared hinge."""

    ib: np.ndarray
    iw: np.ndarray
    margins: np.ndarray
    coef: float
    name: str


@dataclass
class Ranking:
    R: np.ndarray  # (rows, D) raw features of every ranked row
    groups: list[Group]

    def scaled(self, x: float) -> "Ranking":
        """Every pair term weighed ``x`` times as much."""
        return Ranking(self.R, [Group(g.ib, g.iw, g.margins, g.coef * x, g.name) for g in self.groups])

    def terms(self) -> list[rk.PairTerm]:
        """The same pairs as fit_ranked's PairTerms (coef = lam / (P * scale^2) with scale 1)."""
        return [rk.PairTerm(self.R[g.ib] - self.R[g.iw], g.margins, g.coef * len(g.ib), 1.0, g.name) for g in self.groups]


def ranking(stills: dict, noise: dict, clips: dict, p: dict) -> Ranking:
    """The recipe's pairs as row indices (fit_grain_head.still_pairs / clip_groups / the noise term)."""
    blocks, groups, off = [], [], 0

    def add_rank(rd: rk.RankData, margin: float, lam: float, name: str) -> None:
        nonlocal off
        n = len(rd.pairs)
        groups.append(Group(rd.pairs[:, 0] + off, rd.pairs[:, 1] + off, np.full(n, margin), lam / (n * margin**2), name))
        blocks.append(rd.X)
        off += len(rd.X)

    if stills:
        add_rank(fg.still_pairs(stills), p["margin_stills"], p["lam_stills"], "stills")
    if noise and p["lam_noise"] > 0:
        add_rank(fg.still_pairs(noise), p["margin_noise"], p["lam_noise"], "noise")
    if clips:
        ck = sorted(clips)
        idx = {k: off + i for i, k in enumerate(ck)}
        blocks.append(np.stack([clips[k] for k in ck]))
        for kind, pr, margins, lam in fg.clip_groups(ck, SimpleNamespace(**p, margin_crf_clean=None)):
            if lam > 0:
                a = np.array([(idx[b], idx[w]) for b, w in pr])
                groups.append(Group(a[:, 0], a[:, 1], np.asarray(margins, np.float64), lam / len(a), kind))
        off += len(ck)
    return Ranking(np.concatenate(blocks).astype(np.float64), groups)


# ------------------------------------------------------------------------------------------------ the head


@dataclass
class MLP:
    """``base(x) + a.u + b + v.tanh(W u + c)`` with ``u = ((x - mu) / sd) @ P / s``; ``base`` a linear RankedFit."""

    base: rk.RankedFit | None
    mu: np.ndarray
    sd: np.ndarray
    P: np.ndarray  # (D, k)
    s: float
    a: np.ndarray
    b: float
    W: np.ndarray  # (H, k)
    c: np.ndarray
    v: np.ndarray
    raw: tuple[float, float] | None = None  # the tanh layer also sees (base(x) - raw[0]) / raw[1]

    def u(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float64) - self.mu) / self.sd) @ self.P / self.s

    def predict(self, X: np.ndarray) -> np.ndarray:
        u = self.u(X)
        base = self.base.predict(X) if self.base is not None else 0.0
        h = np.hstack([u, ((base - self.raw[0]) / self.raw[1])[:, None]]) if self.raw else u
        return base + u @ self.a + self.b + np.tanh(h @ self.W.T + self.c) @ self.v

    def folded(self) -> dict:
        """The head on raw features: raw = x.w + b0 + v.tanh(x.W1^T + c1) (what a JSON head stores)."""
        M = self.P / (self.sd[:, None] * self.s)  # (D, k): x -> u = x @ M - mu @ M
        m0 = self.mu @ M
        w = M @ self.a
        b0 = self.b - float(m0 @ self.a)
        if self.base is not None:
            w = w + self.base.weights
            b0 += self.base.intercept
        Wu = self.W[:, : M.shape[1]]
        W1 = Wu @ M.T  # (H, D)
        c1 = self.c - Wu @ m0
        if self.raw:  # the base's raw output is linear in x too
            W1 = W1 + np.outer(self.W[:, -1], self.base.weights) / self.raw[1]
            c1 = c1 + self.W[:, -1] * (self.base.intercept - self.raw[0]) / self.raw[1]
        return {"weights": w, "intercept": b0, "hidden_weights": W1, "hidden_bias": c1, "out": self.v}


def basis(Z: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` leading right singular vectors of the standardised rows (D, k), deterministic."""
    from sklearn.utils.extmath import randomized_svd

    _, _, Vt = randomized_svd(Z, k, n_iter=6, random_state=0)
    return Vt.T


def fit_mlp(X, y, rank: Ranking, base: rk.RankedFit | None, P, mu, sd, hidden: int, decay: float, lin: float,
            alpha: float, raw: bool = False, seed: int = 0, max_iter: int = 500) -> MLP:
    """Minimise the linear recipe's loss over (a, b, W, c, v) with ``base`` fixed (L-BFGS, float64).

    The tanh layer's output is in units of std(MOS) (``v`` is stored in points), so ``decay`` weighs |W|^2 + |v|^2
    against a MOS term of about 1 - R^2; ``a`` is penalised ``lin`` times as much as ridge penalises the base's
    weights (without a base, ``lin`` 1 is ridge in the u space)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    Ux = ((np.asarray(X, np.float64) - mu) / sd) @ P
    s = float(np.sqrt((Ux**2).sum(axis=1).mean())) or 1.0
    Ur = ((rank.R - mu) / sd) @ P / s
    Ux = Ux / s
    n, k = Ux.shape
    var = float(np.var(y)) or 1.0
    sy = float(np.sqrt(var))
    bx = base.predict(X) if base is not None else np.zeros(n)
    br = base.predict(rank.R) if base is not None else np.zeros(len(rank.R))
    r0, r1 = float(bx.mean()), sy  # with ``raw``, the tanh layer also sees (base - r0) / r1
    Hx = np.hstack([Ux, ((bx - r0) / r1)[:, None]]) if raw else Ux
    Hr = np.hstack([Ur, ((br - r0) / r1)[:, None]]) if raw else Ur
    T = lambda a: torch.tensor(np.asarray(a, np.float64))  # noqa: E731
    tUx, tUr, ty, tbx, tbr, tHx, tHr = T(Ux), T(Ur), T(y), T(bx), T(br), T(Hx), T(Hr)
    g = torch.Generator().manual_seed(seed)
    lam_a = lin * alpha / (n * var * s**2)  # ridge's penalty alpha |w|^2 / (n var), w = P a / s
    if base is None:  # start from the ridge solution in the u space
        Uc = Ux - Ux.mean(axis=0)
        a0 = np.linalg.solve(Uc.T @ Uc + lin * alpha / s**2 * np.eye(k), Uc.T @ (y - y.mean()))
        b0 = float(y.mean() - Ux.mean(axis=0) @ a0)
    else:
        a0, b0 = np.zeros(k), 0.0
    a = T(a0).requires_grad_(True)
    b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    W = torch.randn(hidden, Hx.shape[1], generator=g, dtype=torch.float64).requires_grad_(True)
    c = torch.zeros(hidden, dtype=torch.float64, requires_grad=True)
    v = (torch.randn(hidden, generator=g, dtype=torch.float64) * 1e-2).requires_grad_(True)
    params = [a, b, W, c, v]
    groups = [(torch.from_numpy(gr.ib), torch.from_numpy(gr.iw), T(gr.margins), gr.coef) for gr in rank.groups]

    def f(U, B, Hin):
        return B + U @ a + b + sy * (torch.tanh(Hin @ W.T + c) @ v)

    def loss():
        r = f(tUx, tbx, tHx) - ty
        out = (r @ r) / (n * var) + decay * ((W * W).sum() + (v * v).sum()) + lam_a * (a @ a)
        fr = f(tUr, tbr, tHr)
        for ib, iw, m, coef in groups:
            h = torch.relu(m - (fr[ib] - fr[iw]))
            out = out + coef * (h @ h)
        return out

    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        val = loss()
        val.backward()
        return val

    opt.step(closure)
    npy = lambda t: t.detach().numpy().copy()  # noqa: E731
    return MLP(base, mu, sd, P, s, npy(a), float(b.detach()), npy(W), npy(c), npy(v) * sy, (r0, r1) if raw else None)


# ------------------------------------------------------------------------------------------------ checks


def damage_check(predict, rows: dict) -> dict:
    """The degradation check's still summary from cached rows (source|kind|level): adjacent pairs ordered (pairs
    whose two rows are the same image, identical features, left out, as run_check does) and levels above clean."""
    lads: dict = {}
    for k, x in rows.items():
        if k.startswith("clip:"):
            continue
        src, kind, level = k.rsplit("|", 2)
        lads.setdefault((src, kind), {})[int(level)] = x
    ordered, above = [], []
    for (src, kind), lv in sorted(lads.items()):
        feats = np.stack([lv[i] for i in range(len(lv))])
        sc = predict(feats)
        for i in range(1, len(sc)):
            above.append((sc[i] - sc[0], src, kind, i))
            if not np.array_equal(feats[i], feats[i - 1]):
                ordered.append(sc[i] < sc[i - 1])
    worst = max(above)
    return {"ordered": float(np.mean(ordered)), "pairs": len(ordered), "max_above_clean": float(worst[0]),
            "worst": f"{worst[1].split('/')[-1]} {worst[2]} {worst[3]}", "above_clean_1": int(sum(a[0] > 1 for a in above))}


def vmaf_agreement(predict, path: Path) -> dict:
    from scipy.stats import spearmanr

    with np.load(path, allow_pickle=False) as z:
        s, vm, content = predict(z["features"]), z["vmaf"], z["content"]
    within = [spearmanr(s[content == c], vm[content == c])[0] for c in sorted(set(content.tolist()))]
    return {"within_mean": float(np.mean(within)), "within_min": float(np.min(within)), "across": float(spearmanr(s, vm)[0])}


def model_tag(weights: str | None) -> str:
    """The cache files' model tag: the card's id (``/`` as ``_``; the built-in model's without ``--weights``)."""
    if weights is None:
        from contrique_video.api import builtin_card

        return builtin_card()["id"]
    return json.loads(Path(weights).read_text())["id"].replace("/", "_")


def load_rows(paths) -> dict:
    rows: dict = {}
    for p in paths:
        if Path(p).is_file():
            rows.update(fg.load(Path(p)))
        else:
            print(f"missing {p}", flush=True)
    return rows


def parse_configs(text: str) -> list[dict]:
    """``base:dims:hidden:decay:lin[:lamx]`` separated by commas, e.g. ``v5:128:16:1e-3:1`` (see :func:`fit_mlp`);
    base ``v5raw`` feeds the base's raw output to the tanh layer too; ``lamx`` weighs every pair term that many times (default 1); base ``linear`` is the linear recipe with
    the pair terms weighed ``lamx`` times (the other fields unused)."""
    out = []
    for item in filter(None, text.split(",")):
        base, dims, hidden, decay, lin, *lamx = item.split(":")
        out.append({"label": item, "base": base, "dims": int(dims), "hidden": int(hidden), "decay": float(decay),
                    "lin": float(lin), "lamx": float(lamx[0]) if lamx else 1.0})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path("runs"), help="folder of the fit feature caches")
    ap.add_argument("--heldout-cache", type=Path, default=Path("runs"), help="folder of dcheck.npz and the --heldout caches")
    ap.add_argument("--clips", default=",".join(CLIPS), help="grain clip caches of FIT sources (names in --cache)")
    ap.add_argument("--noise", default="noise_fit", help="noise ladder caches of FIT sources (names in --cache)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=f"change the recipe: {sorted(V5)}")
    ap.add_argument("--heldout", default="grain_heldout", help="held-out grain clip caches (names in --heldout-cache)")
    ap.add_argument("--configs", default="v5:128:16:1e-5:1")
    ap.add_argument("--evaluate", action="store_true")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="of the protocol's splits (tune on another seed than 0)")
    ap.add_argument("--no-final", action="store_true", help="only the protocol (no full fit and checks)")
    ap.add_argument("--half", type=int, choices=(0, 1), default=None)
    ap.add_argument("--vmaf", type=Path, default=Path("runs/vmaf_features.npz"),
                    help="experiments/vmaf_check.py's OUT/features.npz (rendition features, VMAF, content)")
    ap.add_argument("--sample", type=Path, default=None,
                    help="cache of the mean feature of samples/sample.mp4 (made here if missing; default "
                         "runs/sample_feature_MODEL.npz)")
    ap.add_argument("--out", type=Path, default=None,
                    help="write the last config's full fit here (.npz: MLP.folded's arrays and the logistic mapping)")
    ap.add_argument("--csv", type=Path, default=None, help="append result rows here (results CSV columns)")
    ap.add_argument("--extra-stills", type=Path, action="append", default=[], help="more still ladders (stills term)")
    ap.add_argument("--extra-noise", type=Path, action="append", default=[], help="more noise ladders (noise term)")
    ap.add_argument("--extra-name", default="clive-v6", help="the recipe with the extra ladders")
    ap.add_argument("--weights", default=None,
                    help="a model card (a train-branch run's card.json): its feature caches, named by its id as "
                         "fit_ranked_head.py names them, and its sample feature; the shipped heads (fit on the "
                         "built-in model's features) are then left out")
    ap.add_argument("--heads", action="append", default=[], help="head JSONs (or builtin names) to check as well")
    args = ap.parse_args()
    if args.half is not None and (args.extra_stills or args.extra_noise):
        ap.error("--half splits only the default caches: leave out --extra-stills/--extra-noise")
    t0 = time.time()
    table = fitmod.read_mos(fg.SHARED / "mos.csv")
    tag = model_tag(args.weights)
    clive = fg.load(args.cache / f"feats_clive_{tag}.npz")
    X = np.stack([clive[i] for i in table["image"]])
    y = table["mos"].to_numpy(np.float64)
    stills = fg.load(args.cache / f"feats_fit_{tag}.npz")
    noise = load_rows([args.cache / f"{c}.npz" for c in args.noise.split(",")])
    clips = load_rows([args.cache / f"{c}.npz" for c in args.clips.split(",")])
    recipe = dict(V5)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in V5:
            ap.error(f"--set {item}: the recipe has no {key!r} (one of {sorted(V5)})")
        recipe[key] = float(value)
    unseen = None
    if args.half is not None:  # tuning: half the FIT photos and clip sources, the others unseen
        order = [s for s in FIT if any(k.startswith(s + "|") for k in stills)]
        keep = set(order[args.half::2])
        csrc = sorted({grain.Clip.parse(k).source for k in clips})
        ckeep = set(csrc[args.half::2])
        nsrc = sorted({k.rsplit("|", 2)[0] for k in noise})
        nkeep = set(nsrc[args.half::2])
        split = lambda rows, keepset, src: ({k: v for k, v in rows.items() if src(k) in keepset},  # noqa: E731
                                           {k: v for k, v in rows.items() if src(k) not in keepset})
        stills, us = split(stills, keep, lambda k: k.rsplit("|", 2)[0])
        noise, un = split(noise, nkeep, lambda k: k.rsplit("|", 2)[0])
        clips, uc = split(clips, ckeep, lambda k: grain.Clip.parse(k).source)
        unseen = (us, un, uc)
    rank = ranking(stills, noise, clips, recipe)
    extra = None  # the linear recipe with the extra ladders' pairs
    if args.extra_stills or args.extra_noise:
        extra = ranking({**stills, **load_rows(args.extra_stills)}, {**noise, **load_rows(args.extra_noise)}, clips, recipe)
        print(f"{args.extra_name}: ranking rows {len(extra.R)}; pairs " + ", ".join(f"{g.name} {len(g.ib)}" for g in extra.groups),
              flush=True)
    print(f"CLIVE {len(y)}; ranking rows {len(rank.R)}; pairs " + ", ".join(f"{g.name} {len(g.ib)}" for g in rank.groups)
          + f"  [{time.time() - t0:.0f}s]", flush=True)
    configs = parse_configs(args.configs)

    def fit_all(Xt, yt):
        """RidgeCV, the linear recipe and every config, on (Xt, yt) and the ranking rows."""
        mu, sd = rk._standardizer(Xt)
        ridge = rk.fit_ridge_std(Xt, yt)
        alpha = ridge.info["alpha"]
        v5 = rk.fit_ranked(Xt, yt, None, alpha=alpha, terms=rank.terms())
        models = {"ridge": ridge, "linear recipe": v5}
        if extra is not None:
            models[f"{args.extra_name} recipe"] = rk.fit_ranked(Xt, yt, None, alpha=alpha, terms=extra.terms())
        bases: dict = {}
        for cf in configs:
            rcf = rank.scaled(cf["lamx"])
            if cf["base"] == "linear":
                models[cf["label"]] = rk.fit_ranked(Xt, yt, None, alpha=alpha, terms=rcf.terms())
                continue
            if cf["dims"] not in bases:
                bases[cf["dims"]] = basis(np.vstack([(Xt - mu) / sd, (rank.R - mu) / sd]), cf["dims"])
            models[cf["label"]] = fit_mlp(Xt, yt, rcf, None if cf["base"] == "none" else v5, bases[cf["dims"]], mu, sd,
                                          cf["hidden"], cf["decay"], cf["lin"], alpha, raw=cf["base"] == "v5raw")
        return models

    results: list = []  # (head, metric, value)
    if args.evaluate:
        per: dict = {}
        for i, (test, train) in enumerate(fitmod.protocol_splits(len(y), args.splits, seed=args.seed)):
            for label, m in fit_all(X[train], y[train]).items():
                per.setdefault(label, []).append(fitmod.correlations(m.predict(X[test]), y[test]))
            print(f"split {i + 1}: " + "  ".join(f"{k} {v[-1]['srcc']:.4f}" for k, v in per.items())
                  + f"  [{time.time() - t0:.0f}s]", flush=True)
        for label, rows in per.items():
            results += [(label, "clive_median_srcc", float(np.median([r["srcc"] for r in rows]))),
                        (label, "clive_median_plcc", float(np.median([r["plcc"] for r in rows])))]
            print(f"CLIVE protocol {label:<28} SRCC {np.median([r['srcc'] for r in rows]):.4f}  "
                  f"PLCC {np.median([r['plcc'] for r in rows]):.4f}", flush=True)
    if not args.no_final:
        results += final(args, X, y, fit_all(X, y), unseen, configs[-1]["label"] if configs else None, extra or rank)
    if args.csv:
        fg.append_csv(args.csv, results, "python " + " ".join(sys.argv))


def final(args, X, y, models: dict, unseen, last: str | None, rank: Ranking) -> list:
    """The full fit's checks next to the shipped heads on these features: (head, metric, value) rows; first, how many of its own
    training pairs each fit leaves in the wrong order (pairs with a positive margin) or past their margin."""
    results: list = []
    for label, m in models.items():
        f = m.predict(rank.R)
        line = [f"{g.name} {100 * np.mean(f[g.ib] - f[g.iw] < 0):.2f}%/{100 * np.mean(f[g.ib] - f[g.iw] < g.margins):.1f}%"
                for g in rank.groups if g.margins[0] > 0] + [f"cap past {100 * np.mean(f[g.ib] - f[g.iw] < g.margins):.1f}%"
                                                              for g in rank.groups if g.margins[0] <= 0]
        print(f"{label:<28} training pairs inverted/short of margin: " + "  ".join(line), flush=True)
    tag = model_tag(args.weights)
    heads = {f"{n} (shipped)": h for n in builtin_heads() if (h := resolve_head(n)).features == tag}
    heads.update({f"{Path(h).stem} (json)": resolve_head(h) for h in args.heads})
    scorers = {k: h.predict for k, h in heads.items()}
    for label, m in models.items():
        if label == "ridge":
            continue
        params = rk.fit_logistic(m.predict(X), y)
        scorers[label] = lambda F, m=m, params=params: rk.logistic(m.predict(F), params)
    dcheck = load_rows([args.heldout_cache / "dcheck.npz"])
    held = {name: load_rows([args.heldout_cache / f"{name}.npz"]) for name in args.heldout.split(",")}
    sample_path = args.sample or Path(f"runs/sample_feature_{tag}.npz")
    if not sample_path.is_file():  # what `contrique-video score samples/sample.mp4` applies its head to
        from contrique_video.api import Scorer

        np.savez(sample_path, feature=Scorer(weights=args.weights, threads=1).mean_feature(ROOT / "samples" / "sample.mp4"))
    sample = np.load(sample_path)["feature"]
    for label, sc in scorers.items():
        line = f"{label:<28}"
        if unseen is not None:
            us, un, uc = unseen
            d = damage_check(sc, us)
            line += f" unseen stills: ordered {100 * d['ordered']:.1f}% above {d['max_above_clean']:+.2f} ({d['above_clean_1']} >1)"
            if un:
                d = damage_check(sc, un)
                line += f" | unseen noise: ordered {100 * d['ordered']:.1f}% above {d['max_above_clean']:+.2f} ({d['above_clean_1']} >1)"
            if uc:
                line += " | unseen clips: " + fg.show("", grain.metrics(dict(zip(sorted(uc), sc(np.stack([uc[k] for k in sorted(uc)])))))).strip()
            print(line, flush=True)
            continue
        if dcheck:
            d = damage_check(sc, dcheck)
            results += [(label, f"damage.{k}", d[k]) for k in ("ordered", "max_above_clean", "above_clean_1")]
            line += f" damage: ordered {100 * d['ordered']:.1f}% above {d['max_above_clean']:+.2f} ({d['above_clean_1']} >1; {d['worst']})"
        for name, rows in held.items():
            if not rows:
                continue
            keys = sorted(rows)
            gm = grain.metrics(dict(zip(keys, sc(np.stack([rows[k] for k in keys])))))
            line += f" | {name}: " + fg.show("", gm).strip()
            pre = "heldout_clips" if name == "grain_heldout" else name  # the rows' name before --heldout existed
            results += [(label, f"{pre}.{k}", gm[k]) for k in ("max_rise_grainy", "clean_ordered", "max_above_source")]
            results += [(label, f"{pre}.cost.{g}", gm["cost"][g]) for g in ("t:8", "t:12") if g in gm["cost"]]
        results.append((label, "sample_score", float(sc(sample[None])[0])))
        line += f" | sample {results[-1][2]:.2f}"
        if args.vmaf.is_file():
            va = vmaf_agreement(sc, args.vmaf)
            results += [(label, f"srcc_vs_vmaf_{k}", v) for k, v in va.items()]
            line += " | vmaf " + json.dumps({k: round(v, 4) for k, v in va.items()})
        print(line, flush=True)
    if args.out and last:
        m = models[last]
        np.savez(args.out, **m.folded(), mapping=np.array(rk.fit_logistic(m.predict(X), y)))
        print(f"wrote {args.out} ({last})")
    return results


if __name__ == "__main__":
    main()

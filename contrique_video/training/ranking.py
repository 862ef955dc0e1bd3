"""Heads that never reward damage: MOS regression plus ranking constraints from synthetic degradations.

A frame's feature vector is ``[layout(full) | layout(half)]`` (the half-scale copy is
:func:`contrique_video.models.transforms.half_scale`). :class:`FrameFeatures` wraps any one-scale feature module
(N x 3 x H x W in [0, 1] -> N x dim) into that two-scale extractor, so the head can be refit on any
encoder (ImageNet EfficientNet-Lite, a fine-tuned one, CONTRIQUE) in one command.

The constrained fit (:func:`fit_ranked`) minimises, on standardised features ``z``::

    mean((z @ w + b - mos)^2) / var(mos)                           # MOS regression (scale-free)
    + lam_rank * mean(max(0, margin - (s(better) - s(worse)))^2)    # ordered pairs, s in MOS points
    + lam_l2 * |w|^2                                                # ridge penalty

where the pairs are (clean > every level, level k > level k+1, CRF c > CRF c+step, factor f > f') of
pristine images degraded synthetically. The raw linear value is mapped to 0..100 by a monotone
logistic fitted on the MOS (:func:`fit_logistic`), so the ordering of raw values is kept exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from contrique_video.errors import InputError

# ----------------------------------------------------------------------------------------- features


class FrameFeatures:
    """Two-scale features of one RGB frame from a one-scale module: ``[module(full) | module(half)]``.

    ``module`` takes an N x 3 x H x W float32 tensor in [0, 1] and returns N x D; ``name`` identifies the
    extractor (it keys feature caches and is written into the head's ``features`` field).
    """

    def __init__(self, module, name: str):
        self.module = module.eval() if hasattr(module, "eval") else module
        self.name = name

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        import torch

        from contrique_video.models.transforms import half_scale, to_array

        rgb = np.ascontiguousarray(rgb)
        out = []
        with torch.inference_mode():
            for img in (rgb, half_scale(rgb)):
                x = torch.from_numpy(to_array(img))[None]
                out.append(self.module(x).float().numpy()[0])
        return np.concatenate(out).astype(np.float32)


def lite_features(variant: str = "lite2", layout: str = "stages-meanstd") -> FrameFeatures:
    """Frozen ImageNet EfficientNet-Lite features in ``layout`` at full and half scale."""
    from contrique_video.models.efficientnet_lite import LayoutFeatures, load_imagenet

    return FrameFeatures(LayoutFeatures(load_imagenet(variant), layout), f"efficientnet-{variant}-imagenet/{layout}")


def last_from_stages(X: np.ndarray, channels: list[int]) -> np.ndarray:
    """The ``last`` layout (mean of the last map, both scales) sliced out of ``stages-meanstd`` features.

    ``stages-meanstd`` holds mean then std of every stage (last map last) per scale, so the last map's
    mean is a contiguous run in each scale half; this saves a second pass over the images.
    """
    X = np.asarray(X)
    per_scale = 2 * sum(channels)
    if X.shape[1] != 2 * per_scale:
        raise InputError(f"expected {2 * per_scale} stages-meanstd features, got {X.shape[1]}")
    start = 2 * sum(channels[:-1])
    cols = np.r_[start : start + channels[-1], per_scale + start : per_scale + start + channels[-1]]
    return X[:, cols]


class FeatureCache:
    """Feature rows by string key in one .npz, written every ``every`` new rows (so long runs can resume)."""

    def __init__(self, path: str | Path, extractor_name: str, every: int = 50):
        self.path = Path(path)
        self.extractor_name = extractor_name
        self.every = every
        self.rows: dict[str, np.ndarray] = {}
        self._new = 0
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as z:
                held = str(z["extractor"])
                if held != extractor_name:  # never overwrite another extractor's rows
                    raise InputError(f"feature cache {self.path} holds {held} features, not {extractor_name}; "
                                     "pass another cache path")
                self.rows = dict(zip(z["keys"].tolist(), z["features"]))

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str, make: Callable[[], np.ndarray], extract: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        if key not in self.rows:
            self.rows[key] = np.asarray(extract(make()), np.float32)
            self._new += 1
            if self._new >= self.every:
                self.save()
        return self.rows[key]

    def save(self) -> None:
        """Write the rows if any were added since the last save (so a reader never overwrites a writer)."""
        if not self.rows or not self._new:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".partial")
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.array(list(self.rows)), features=np.stack(list(self.rows.values())),
                     extractor=np.array(self.extractor_name))
        tmp.replace(self.path)
        self._new = 0


class StackedFeatures:
    """Rows of several extractors side by side, each kept in its own :class:`FeatureCache`, with the same
    ``get`` as one cache: adding the NSS block to cached network features costs only the NSS."""

    def __init__(self, parts: list[tuple[FeatureCache, Callable[[np.ndarray], np.ndarray]]]):
        self.parts = parts

    def __contains__(self, key: str) -> bool:
        return all(key in cache for cache, _ in self.parts)

    def get(self, key: str, make: Callable[[], np.ndarray], extract=None) -> np.ndarray:
        """The stacked row of ``key``; ``make`` runs at most once, and only if some part lacks the row."""
        made: list[np.ndarray] = []

        def once() -> np.ndarray:
            if not made:
                made.append(make())
            return made[0]

        return np.concatenate([cache.get(key, once, ex) for cache, ex in self.parts])

    def save(self) -> None:
        for cache, _ in self.parts:
            cache.save()


def model_features(weights: str | Path | None, head: str | None = None, threads: int = 1, precision: str = "auto"):
    """(extract, scorer) for any model the scorer loads: ``extract(rgb)`` is one frame's feature row, as
    scored (NSS included when the card has it); ``weights`` None is the built-in model; ``precision`` as
    ``score --precision`` (auto: what ``score`` runs on this CPU)."""
    from contrique_video.api import Scorer

    scorer = Scorer(weights=weights, head=head, threads=threads, precision=precision)
    return (lambda rgb: scorer.frame_features([rgb])[0]), scorer


def feature_id(scorer) -> str:
    """A feature cache's extractor name for a scorer's rows: the model, and the precision where it is not fp32, so
    rows from a bf16 run (what ``auto`` picks on a bf16 CPU) never mix with fp32 ones in one cache."""
    precision = scorer.backend.precision
    return scorer.model_id if precision == "fp32" else f"{scorer.model_id} ({precision})"


def nss_rows(rgb: np.ndarray) -> np.ndarray:
    """The scorer's 36 NSS features (full and half scale) of one frame, the block ``+nss`` layouts append."""
    from contrique_video.models.nss import nss_features

    return nss_features(np.ascontiguousarray(rgb)).astype(np.float32)


def read_rgb(path: str | Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ----------------------------------------------------------------------------------------- ranking data


@dataclass
class RankData:
    """Feature rows of synthetic degradations and the (better, worse) row pairs they must keep in order."""

    X: np.ndarray  # (R, D)
    pairs: np.ndarray  # (P, 2) int: row of the better image, row of the worse one
    kinds: np.ndarray  # (P,) str: degradation type of each pair
    sources: np.ndarray  # (P,) str: pristine source of each pair
    adjacent: np.ndarray  # (P,) bool: levels k, k+1 (else clean vs level k >= 2)

    def subset(self, keep_sources: Iterable[str]) -> "RankData":
        keep = np.isin(self.sources, list(keep_sources))
        return RankData(self.X, self.pairs[keep], self.kinds[keep], self.sources[keep], self.adjacent[keep])

    def counts(self) -> dict:
        return {"pairs": int(len(self.pairs)), "adjacent_pairs": int(self.adjacent.sum()),
                "sources": int(len(set(self.sources.tolist()))), "types": int(len(set(self.kinds.tolist()))),
                "images": int(len(np.unique(self.pairs)))}


def rank_data(rows: dict[str, np.ndarray], kinds: Iterable[str] | None = None) -> RankData:
    """Pairs from cached ladder rows keyed ``source|kind|level`` (level 0 = clean, shared by all ladders)."""
    from contrique_video.training.degradation import ladder_pairs

    wanted = None if kinds is None else set(kinds)
    ladders: dict[tuple[str, str], dict[int, str]] = {}
    for key in rows:
        source, kind, level = key.rsplit("|", 2)
        if wanted is None or kind in wanted:
            ladders.setdefault((source, kind), {})[int(level)] = key
    keys = sorted({k for lv in ladders.values() for k in lv.values()})
    index = {k: i for i, k in enumerate(keys)}
    pairs, pkinds, psources, adjacent = [], [], [], []
    for (source, kind), levels in sorted(ladders.items()):
        n = max(levels) + 1
        if sorted(levels) != list(range(n)):
            raise InputError(f"ladder {source} {kind} is missing levels: has {sorted(levels)}")
        for better, worse in ladder_pairs(n):
            pairs.append((index[levels[better]], index[levels[worse]]))
            pkinds.append(kind)
            psources.append(source)
            adjacent.append(worse == better + 1)
    if not pairs:
        raise InputError("no degradation ladders in the cached rows")
    X = np.stack([rows[k] for k in keys]).astype(np.float64)
    return RankData(X, np.array(pairs, np.int64), np.array(pkinds), np.array(psources), np.array(adjacent))


def pair_accuracy(scores: np.ndarray, data: RankData, adjacent_only: bool = True) -> float:
    """Share of pairs whose better image scores strictly higher."""
    sel = data.adjacent if adjacent_only else np.ones(len(data.pairs), bool)
    p = data.pairs[sel]
    return float(np.mean(scores[p[:, 0]] > scores[p[:, 1]])) if len(p) else float("nan")


# ----------------------------------------------------------------------------------------- fitting

RIDGE_ALPHAS = np.logspace(-1, 5, 25)


@dataclass
class RankedFit:
    """A linear head on raw features (``X @ weights + intercept``) and how it was fit."""

    weights: np.ndarray
    intercept: float
    info: dict

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, np.float64) @ self.weights + self.intercept


DEAD_SPREAD = 1e-2  #: a feature spread under this share of the median feature's is not z-scored


def _standardizer(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale that z-score a model's features (one network's activations: comparable spreads), except
    near-dead channels (spread under :data:`DEAD_SPREAD` of the median's), which keep scale 1 so the penalty holds
    their weight near zero: z-scored, one got a weight of -61809, and a 1e-4 activation on one image (a bf16
    rounding, or an unseen frame waking the channel) moved its score 15 points."""
    mu, sd = X.mean(axis=0), X.std(axis=0)
    constant = 1e-8 * max(1.0, float(np.abs(mu).max(initial=0.0)))
    floor = max(DEAD_SPREAD * float(np.median(sd)) if sd.size else 0.0, constant)
    return mu, np.where(sd > floor, sd, 1.0)


def fit_ridge_std(X: np.ndarray, y: np.ndarray, alphas: np.ndarray = RIDGE_ALPHAS) -> RankedFit:
    """Baseline: RidgeCV (leave-one-out alpha) on features standardised with the training part's statistics."""
    from sklearn.linear_model import RidgeCV

    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    mu, sd = _standardizer(X)
    model = RidgeCV(alphas=alphas).fit((X - mu) / sd, y)
    w = model.coef_ / sd
    return RankedFit(w, float(model.intercept_ - w @ mu), {"alpha": float(model.alpha_)})


@dataclass
class PairTerm:
    """Extra ranking pairs with a margin each: ``s(better) - s(worse) >= margins`` in raw points, penalised as
    ``lam * mean(relu(margins - (s_better - s_worse))^2) / scale^2``. ``diffs`` holds the raw feature
    differences (better - worse). A negative margin is an upper bound: (grainy, clean) with margin -12 says
    grain costs at most 12 points."""

    diffs: np.ndarray  # (P, D)
    margins: np.ndarray  # (P,)
    lam: float
    scale: float = 1.0
    name: str = ""


def fit_ranked(X: np.ndarray, y: np.ndarray, rank: RankData | None, lam_rank: float = 1.0, margin: float = 1.0,
               alpha: float | None = None, max_iter: int = 300, alphas: np.ndarray = RIDGE_ALPHAS,
               terms: Sequence[PairTerm] = ()) -> RankedFit:
    """Linear head fit on MOS with a squared-hinge ranking loss on the synthetic pairs.

    On features standardised with the MOS set's statistics, minimises::

        mean((z w + b - y)^2) / var(y) + lam_rank * mean(relu(margin - (s_better - s_worse))^2) / margin^2
        + alpha / (n var(y)) * |w|^2

    (the first and last terms are RidgeCV's objective scaled by 1 / (n var y), so with ``lam_rank=0`` the
    result is the ridge solution). ``alpha`` defaults to RidgeCV's leave-one-out choice on (X, y);
    ``margin`` is in MOS points. Each of ``terms`` (:class:`PairTerm`: clip pairs with their own margins)
    adds its own squared-hinge term. Solved with L-BFGS from the ridge solution (the problem is convex).
    """
    from scipy.optimize import minimize

    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    if len(X) != len(y) or X.ndim != 2:
        raise InputError(f"features {X.shape} and {len(y)} scores do not match")
    if not margin > 0 or lam_rank < 0:
        raise InputError(f"need margin > 0 and lam_rank >= 0, got {margin}, {lam_rank}")
    mu, sd = _standardizer(X)
    Z = (X - mu) / sd
    ridge = fit_ridge_std(X, y, alphas) if alpha is None else None
    alpha = ridge.info["alpha"] if ridge is not None else float(alpha)
    n, d = Z.shape
    var = float(y.var()) or 1.0
    lam2 = alpha / (n * var)
    ym = float(y.mean())
    info = {"alpha": alpha, "lam_rank": float(lam_rank), "margin": float(margin), "n_mos": int(n)}
    # Ridge start: closed form in the dual (n << d).
    Zc = Z - Z.mean(axis=0)
    K = Zc @ Zc.T
    w0 = Zc.T @ np.linalg.solve(K + alpha * np.eye(n), y - ym)
    b0 = ym - float(Z.mean(axis=0) @ w0)
    groups = []  # (pair differences on standardised features, margins, weight of the mean squared hinge)
    if rank is not None and lam_rank > 0 and len(rank.pairs):
        S = (rank.X - mu) / sd
        groups.append((S[rank.pairs[:, 0]] - S[rank.pairs[:, 1]], np.full(len(rank.pairs), float(margin)),
                       lam_rank / (len(rank.pairs) * margin * margin)))
    for t in terms:
        if t.lam > 0 and len(t.diffs):
            groups.append((np.asarray(t.diffs, np.float64) / sd, np.asarray(t.margins, np.float64),
                           t.lam / (len(t.diffs) * t.scale * t.scale)))
    if not groups:
        w, b = w0, b0
        info.update(iterations=0, pairs=0)
    else:
        def fun(theta):
            w, b = theta[:d], theta[d]
            r = Z @ w + b - y
            loss = r @ r / (n * var) + lam2 * (w @ w)
            gw = 2 * (Z.T @ r) / (n * var) + 2 * lam2 * w
            for DS, m, c in groups:
                h = np.maximum(0.0, m - DS @ w)
                loss += c * (h @ h)
                gw -= 2 * c * (DS.T @ h)
            gb = 2 * r.sum() / (n * var)
            return loss, np.r_[gw, gb]

        res = minimize(fun, np.r_[w0, b0], jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter, "maxcor": 20, "gtol": 1e-9, "ftol": 1e-12})
        w, b = res.x[:d], float(res.x[d])
        info.update(iterations=int(res.nit), loss=float(res.fun), pairs=int(sum(len(g[1]) for g in groups)))
    wr = w / sd
    return RankedFit(wr, float(b - wr @ mu), info)


# ----------------------------------------------------------------------------------------- 0..100 mapping


def logistic(raw: np.ndarray, params, lo: float = 0.0, hi: float = 100.0) -> np.ndarray:
    """Monotone 4-parameter logistic into [lo, hi]: ``lo + (hi - lo) * (a + (c - a) * sigmoid((raw - m) / s))``.

    With 0 <= a < c <= 1 and s > 0 it is strictly increasing, so it keeps the order of raw values.
    """
    a, c, m, s = (float(v) for v in params)
    t = np.clip((np.asarray(raw, np.float64) - m) / s, -500, 500)
    return lo + (hi - lo) * (a + (c - a) / (1.0 + np.exp(-t)))


def fit_logistic(raw: np.ndarray, y: np.ndarray, lo: float = 0.0, hi: float = 100.0) -> list[float]:
    """Least-squares fit of :func:`logistic` to (raw, y), the IQA literature's mapping, constrained to be increasing."""
    from scipy.optimize import least_squares

    raw = np.asarray(raw, np.float64)
    y = np.asarray(y, np.float64)
    q = (np.clip(y, lo, hi) - lo) / (hi - lo)
    s0 = float(raw.std()) or 1.0

    # Parametrise a, c as a = lower, c = lower + span with lower + span <= 1 enforced by a penalty-free
    # squashing: span = (1 - lower) * sigmoid(u).
    def unpack(p):
        lower, u, m, log_s = p
        span = (1 - lower) / (1 + np.exp(-u))
        return lower, lower + span, m, np.exp(log_s)

    def resid(p):
        return logistic(raw, unpack(p), 0.0, 1.0) - q

    p0 = [max(0.0, float(q.min()) - 0.05), 1.0, float(np.median(raw)), np.log(s0)]
    res = least_squares(resid, p0, bounds=([0.0, -20, -np.inf, np.log(s0) - 10], [0.999, 20, np.inf, np.log(s0) + 10]))
    a, c, m, s = unpack(res.x)
    return [float(a), float(c), float(m), float(s)]

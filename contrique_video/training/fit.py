"""Fitting and evaluating linear heads the way the CONTRIQUE paper does.

Ridge regression on frozen features, with the regularisation chosen by cross-validation on the training
part only; evaluation is the paper's protocol: 10 random 80/20 splits, median of each correlation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import RidgeCV

from contrique_video.errors import InputError
from contrique_video.features import Block
from contrique_video.files import atomic_path

ALPHAS = np.logspace(-4, 3, 15)


def read_mos(csv: str | Path) -> pd.DataFrame:
    """A MOS table with ``image`` and ``mos`` columns; rejects missing or non-numeric scores."""
    try:
        df = pd.read_csv(csv)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read MOS table {csv}: {str(exc).splitlines()[0]}") from None
    if not {"image", "mos"} <= set(df.columns):
        raise InputError(f"MOS table {csv} needs columns 'image' and 'mos' (has {', '.join(map(str, df.columns))})")
    mos = pd.to_numeric(df["mos"], errors="coerce")
    bad = df["image"][mos.isna()]
    if len(bad):
        raise InputError(f"MOS table {csv} has {len(bad)} missing or non-numeric scores, e.g. for {bad.iloc[0]!r}")
    return pd.DataFrame({"image": df["image"].astype(str), "mos": mos.astype(float)})


@dataclass
class LinearFit:
    weights: np.ndarray
    intercept: float
    alphas: dict[str, float]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, np.float64) @ self.weights + self.intercept


def fit_ridge(X: np.ndarray, y: np.ndarray, alphas: np.ndarray = ALPHAS) -> RidgeCV:
    """Ridge with alpha picked by efficient leave-one-out CV on (X, y) alone."""
    return RidgeCV(alphas=alphas).fit(np.asarray(X, np.float64), np.asarray(y, np.float64))


def fit_linear(X: np.ndarray, y: np.ndarray, blocks: list[Block] | None = None) -> LinearFit:
    """One Ridge per feature block, averaged (late fusion), folded into a single linear head on raw features.

    With one block this is the paper's Ridge. Averaging per-block heads keeps 36 classical features from
    being drowned by 4096 learned ones, which a single Ridge on the concatenation does.
    """
    X = np.asarray(X, np.float64)
    blocks = blocks or [Block("all", X.shape[1])]
    if sum(b.size for b in blocks) != X.shape[1]:
        raise InputError(f"feature blocks cover {sum(b.size for b in blocks)} columns but the features have {X.shape[1]}")
    weights, intercept, alphas, start = [], 0.0, {}, 0
    for b in blocks:
        Xb = X[:, start : start + b.size]
        start += b.size
        mu = Xb.mean(axis=0) if b.standardize else np.zeros(b.size)
        sd = Xb.std(axis=0) + 1e-12 if b.standardize else np.ones(b.size)
        model = fit_ridge((Xb - mu) / sd, y)
        w = model.coef_ / sd
        weights.append(w / len(blocks))
        intercept += (float(model.intercept_) - float(w @ mu)) / len(blocks)
        alphas[b.name] = float(model.alpha_)
    return LinearFit(np.concatenate(weights), intercept, alphas)


def correlations(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {
        "srcc": float(stats.spearmanr(pred, y)[0]),
        "plcc": float(stats.pearsonr(pred, y)[0]),
        "krcc": float(stats.kendalltau(pred, y)[0]),
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
    }


def protocol_splits(n: int, splits: int = 10, test_size: float = 0.2, seed: int = 0):
    """The paper's protocol's (test, train) index arrays: ``splits`` random permutations of ``n`` items.

    They depend only on ``seed`` and ``n``, so every fitter, and any side data tied to the images (ranking
    pairs made from a training image, say), sees the same splits.
    """
    rng = np.random.default_rng(seed)
    n_test = max(2, int(round(n * test_size)))
    for _ in range(splits):
        perm = rng.permutation(n)
        yield perm[:n_test], perm[n_test:]


def evaluate(X: np.ndarray, y: np.ndarray, splits: int = 10, test_size: float = 0.2, seed: int = 0,
             blocks: list[Block] | None = None, fitter=None, fitter_takes_train: bool = False) -> dict:
    """Median SRCC/PLCC/KRCC/RMSE over ``splits`` random train/test splits (the paper's protocol).

    ``fitter(X_train, y_train)`` returns a model with ``predict``; the default is :func:`fit_linear` with
    ``blocks``. With ``fitter_takes_train`` it is called ``fitter(X_train, y_train, train_indices)``, for
    fits that must leave out side data of the test images. The splits are :func:`protocol_splits`.
    """
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    fitter = fitter or (lambda Xt, yt: fit_linear(Xt, yt, blocks))
    rows = []
    for test, train in protocol_splits(len(y), splits, test_size, seed):
        model = fitter(X[train], y[train], train) if fitter_takes_train else fitter(X[train], y[train])
        rows.append(correlations(model.predict(X[test]), y[test]))
    out = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    out["srcc_all"] = [r["srcc"] for r in rows]
    out["splits"] = splits
    out["n"] = int(len(y))
    return out


def match_files(table: pd.DataFrame, folder: str | Path) -> list[Path]:
    """The file for every row of a MOS table; every name must exist."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"media folder not found: {folder}")
    paths = [folder / name for name in table["image"]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{len(missing)} names in the MOS table match no file in {folder}, e.g. {missing[0]!r}")
    return paths


def laplacian_variance(rgb: np.ndarray) -> float:
    """Classic sharpness baseline: log variance of the Laplacian of the luma."""
    from scipy import ndimage

    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return float(np.log(ndimage.laplace(luma).var() + 1e-12))


#: New feature rows between two writes of a feature cache.
SAVE_EVERY = 50


def media_features(extract, paths: list[Path], cache: str | Path | None, key: str, progress: bool = True) -> np.ndarray:
    """Rows of ``extract(path)`` for every file; a cache (.npz) keeps rows per file for the same ``key``.

    The cache is written every :data:`SAVE_EVERY` new rows and when extraction stops (an error, Ctrl-C), so a
    long extraction that is cut short resumes where it stopped.
    """
    from tqdm import tqdm

    known: dict[str, np.ndarray] = {}
    if cache and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                known = dict(zip(z["names"].tolist(), z["features"]))
    todo = [p for p in paths if str(p) not in known]
    if cache and todo:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        with atomic_path(cache) as tmp, open(tmp, "wb") as f:
            np.savez(f, names=np.array(list(known)), features=np.stack(list(known.values())), key=np.array(key))

    added = 0
    try:
        for p in tqdm(todo, desc="features", unit="file", disable=not progress):
            known[str(p)] = np.atleast_1d(extract(p)).astype(np.float32)
            added += 1
            if cache and added % SAVE_EVERY == 0:
                save()
    finally:
        if cache and added % SAVE_EVERY:
            save()
    return np.stack([known[str(p)] for p in paths])

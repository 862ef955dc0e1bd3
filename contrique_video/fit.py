"""Fitting and evaluating linear heads the way the CONTRIQUE paper does.

Ridge regression on frozen features, with the regularisation chosen by cross-validation on the training
part only; evaluation is the paper's protocol: 10 random 80/20 splits, median of each correlation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import RidgeCV

from .errors import InputError

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


def fit_ridge(X: np.ndarray, y: np.ndarray, alphas: np.ndarray = ALPHAS) -> RidgeCV:
    """Ridge with alpha picked by efficient leave-one-out CV on (X, y) alone."""
    return RidgeCV(alphas=alphas).fit(np.asarray(X, np.float64), np.asarray(y, np.float64))


def correlations(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {
        "srcc": float(stats.spearmanr(pred, y)[0]),
        "plcc": float(stats.pearsonr(pred, y)[0]),
        "krcc": float(stats.kendalltau(pred, y)[0]),
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
    }


def evaluate(X: np.ndarray, y: np.ndarray, splits: int = 10, test_size: float = 0.2, seed: int = 0) -> dict:
    """Median SRCC/PLCC/KRCC/RMSE over ``splits`` random train/test splits (the paper's protocol)."""
    X = np.asarray(X, np.float64)
    y = np.asarray(y, np.float64)
    rng = np.random.default_rng(seed)
    n_test = max(2, int(round(len(y) * test_size)))
    rows = []
    for _ in range(splits):
        perm = rng.permutation(len(y))
        test, train = perm[:n_test], perm[n_test:]
        model = fit_ridge(X[train], y[train])
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


def media_features(extract, paths: list[Path], cache: str | Path | None, key: str, progress: bool = True) -> np.ndarray:
    """Rows of ``extract(path)`` for every file, reusing a cache (.npz) written for the same files and key."""
    from tqdm import tqdm

    names = np.array([str(p) for p in paths])
    if cache and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key and z["names"].shape == names.shape and (z["names"] == names).all():
                return z["features"]
    rows = [np.atleast_1d(extract(p)) for p in tqdm(paths, desc="features", unit="file", disable=not progress)]
    feats = np.stack(rows).astype(np.float32)
    if cache:
        tmp = Path(f"{cache}.partial")
        with open(tmp, "wb") as f:
            np.savez(f, names=names, features=feats, key=np.array(key))
        tmp.replace(cache)
    return feats

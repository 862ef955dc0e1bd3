"""Held-out SRCC of each stage's block of a Lite training run's trunks (which part of the features moved).
Answered: the distortion objectives turn the map they sit on into a distortion-class map, which predicts CLIVE MOS less well (issue #12).

    python experiments/stage_srcc.py runs/lite0-classify-tlr001 0 100 [--variant lite0]

For each listed step it loads ``RUN/trunks/stepNNNNNN.pt``, extracts the two-scale stages-meanstd features
of the ``train --holdout 0.3`` fold of clive-train (the fold every run's learning curve uses), and scores
all features and each stage's mean/std block alone with the same protocol (standardised Ridge, 10 random
80/20 splits, median SRCC).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from contrique_video.models.efficientnet_lite import EfficientNetLite, LiteTrainee
from contrique_video.features import Block
from contrique_video.training.fit import evaluate, read_mos
from contrique_video.training.train import heldout_features, holdout_split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("steps", type=int, nargs="+")
    ap.add_argument("--variant", default="lite0")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/clive-train"))
    ap.add_argument("--holdout", type=float, default=0.3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    table = read_mos(args.data / "mos.csv")
    held = table[table["image"].isin(holdout_split(list(table["image"]), args.holdout)[1])]
    paths = [args.data / "images" / n for n in held["image"]]
    y = held["mos"].to_numpy()
    for step in args.steps:
        trunk = EfficientNetLite(args.variant)
        trunk.load_state_dict(torch.load(args.run / "trunks" / f"step{step:06d}.pt", weights_only=True), strict=True)
        f = heldout_features(LiteTrainee(trunk).scoring_module(), paths, "cpu")
        per_scale, start, blocks = f.shape[1] // 2, 0, []
        for c in trunk.channels:
            cols = np.r_[start : start + 2 * c, per_scale + start : per_scale + start + 2 * c]
            start += 2 * c
            blocks.append(round(evaluate(f[:, cols], y, blocks=[Block("b", len(cols), True)])["srcc"], 3))
        full = evaluate(f, y, blocks=[Block("all", f.shape[1], True)])
        print(f"step {step}: all {full['srcc']:.4f} (PLCC {full['plcc']:.4f}); stages 1-7 and head: {blocks}", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fit a head that predicts VMAF (with no reference) from the features experiments/vmaf_check.py saved.
Answered: no VMAF-calibrated head: leave-one-content-out SRCC 0.893 within contents but 0.315 across them (63 renditions are too few).

The honest number is leave-one-content-out: the head is fit on every content but one and tested on the
renditions of the one left out, so a content it ranks was never seen in fitting. Reported: SRCC with VMAF
across all renditions (out-of-content predictions pooled) and within each content. With --output, the head
fit on all contents is written (plain JSON, like every head).

    python experiments/fit_vmaf_head.py runs/vmaf --output contrique_video/assets/heads/vmaf-ladder.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from contrique_video.api import builtin_card
from contrique_video.models.head import LinearHead
from contrique_video.models.nss import NUM_FEATURES
from contrique_video.features import Block
from contrique_video.training.fit import fit_linear


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="Folder with features.npz from experiments/vmaf_check.py.")
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    data = np.load(args.run / "features.npz", allow_pickle=False)
    X, y, content = data["features"], data["vmaf"], data["content"]
    blocks = [Block("contrique", X.shape[1] - NUM_FEATURES), Block("nss", NUM_FEATURES, True)]
    predicted = np.empty_like(y)
    for c in np.unique(content):
        held = content == c
        predicted[held] = fit_linear(X[~held], y[~held], blocks).predict(X[held])
    within = {str(c): float(spearmanr(predicted[content == c], y[content == c]).statistic) for c in np.unique(content)}
    report = {"renditions": int(len(y)), "contents": len(within),
              "loco_srcc_across": float(spearmanr(predicted, y).statistic),
              "loco_srcc_within_mean": float(np.mean(list(within.values()))),
              "loco_rmse": float(np.sqrt(np.mean((predicted - y) ** 2))),
              "loco_srcc_within": {k: round(v, 3) for k, v in within.items()}}
    print(json.dumps(report, indent=1))
    if args.output:
        model = fit_linear(X, y, blocks)
        head = LinearHead(weights=model.weights, intercept=model.intercept, name=args.output.stem,
                          features=builtin_card()["id"], scale="VMAF (predicted with no reference)", range=(0.0, 100.0),
                          higher_is_better=True,
                          trained_on=f"VMAF v0.6.1 of {len(y)} x264 ladder renditions of {len(within)} generated "
                                     f"contents (experiments/vmaf_check.py), upscaled to the display size",
                          extra={"alpha": model.alphas, "leave_one_content_out": report})
        head.save(args.output)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

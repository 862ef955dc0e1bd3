"""Do a model's features alone still read an encoder's grain removal as a gain? (issue 30)

    PYTHONPATH=. python experiments/ridge_grain_check.py runs/branch-grain-eval/branch-grain-step1000

A plain RidgeCV head (CLIVE MOS alone, standardised, logistic to 0-100; no ranking terms) on each model's features,
scored on the held-out grain clips (``grain.metrics``: CRF steps rising on grainy sources, encodes above their
source, clean ladders' order, grain's cost): the built-in model from ``--base`` (its RidgeCV and the shipped
clive-v5), then each folder of experiments/branch_grain.sh (``feats_clive_<id>.npz`` and ``grain_heldout.npz``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fit_grain_head as fg  # noqa: E402

from contrique_video.models.head import resolve_head  # noqa: E402
from contrique_video.training import fit as fitmod  # noqa: E402
from contrique_video.training import grain  # noqa: E402
from contrique_video.training import ranking as rk  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="experiments/branch_grain.sh cache folders (named by card id)")
    ap.add_argument("--base", type=Path, default=Path("runs"), help="the built-in model's caches")
    args = ap.parse_args()
    table = fitmod.read_mos(fg.SHARED / "mos.csv")
    y = table["mos"].to_numpy(np.float64)
    models = [("builtin-v3", args.base / "feats_clive_builtin-v3.npz", args.base / "grain_heldout.npz")]
    models += [(d.name, d / f"feats_clive_{d.name}.npz", d / "grain_heldout.npz") for d in args.folders]
    for name, clive, held in models:
        rows = fg.load(clive)
        X = np.stack([rows[i] for i in table["image"]])
        ridge = rk.fit_ridge_std(X, y)
        params = rk.fit_logistic(ridge.predict(X), y)
        clips = fg.load(held)
        keys = sorted(clips)
        F = np.stack([clips[k] for k in keys])
        heads = {"RidgeCV": rk.logistic(ridge.predict(F), params)}
        if name == "builtin-v3":
            heads["clive-v5 (shipped)"] = resolve_head("clive-v5").predict(F)
        for label, scores in heads.items():
            print(f"{name} {label}: {len(keys)} clips: " + fg.show("", grain.metrics(dict(zip(keys, scores)))).strip(),
                  flush=True)


if __name__ == "__main__":
    main()

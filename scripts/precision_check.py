"""Accuracy of reduced-precision paths against eager fp32 on CLIVE, for a model card's "precisions" entry.

Scores a fixed subset of CLIVE (every ``--step``-th row of mos.csv, in file order) with the model's default head
on eager PyTorch fp32 and on each candidate path, one image at a time round-robin over the paths, and prints
the JSON entry per path: SRCC change against MOS, mean and max absolute score change (0-100 scale).

    python scripts/precision_check.py --clive ../shared/data/clive-train --step 3 --paths torch:bf16 \\
        -o runs/precision/builtin-v3.json [--write-card]

``--write-card`` stores the entries under "precisions" in the model card that was measured (by default the
built-in model's ``contrique_video/assets/builtin.json``), keyed by path (``"openvino bf16"``: auto reads the entry
of the path it would time); an entry names the backend it was measured on, the subset and the command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clive", required=True, type=Path)
    ap.add_argument("--weights", type=Path, help="model card or checkpoint (default: the built-in model)")
    ap.add_argument("--step", type=int, default=1, help="every N-th image of mos.csv (1: all)")
    ap.add_argument("--paths", default="torch:bf16", help="BACKEND:PRECISION,... compared with torch:fp32")
    ap.add_argument("--threads", type=int)
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--write-card", action="store_true")
    args = ap.parse_args(argv)

    from scipy.stats import spearmanr

    from contrique_video.api import Scorer, builtin_weights
    from contrique_video.backends.cpu import cpu_summary
    from contrique_video.training.fit import match_files, read_mos

    weights = args.weights or builtin_weights()
    table = read_mos(args.clive / "mos.csv").iloc[:: args.step]
    files = match_files(table, args.clive / "images")
    mos = table["mos"].to_numpy()
    paths = [("torch", "fp32")] + [tuple(p.split(":", 1)) for p in args.paths.split(",")]
    if any(b == "auto" or p == "auto" for b, p in paths):
        raise SystemExit("--paths names BACKEND:PRECISION pairs, not auto: a card entry is for one path")
    scorers = [Scorer(weights=weights, backend=b, precision=p, threads=args.threads) for b, p in paths]
    scores = np.zeros((len(paths), len(files)))
    t0 = time.time()
    for i, f in enumerate(files):
        for k, s in enumerate(scorers):
            scores[k, i] = s.score(f).score
        if i % 25 == 0:
            print(f"{i + 1}/{len(files)} images, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.output.with_suffix(".npy"), scores)
    ref = scores[0]
    srcc_ref = float(spearmanr(ref, mos)[0])
    command = "python scripts/precision_check.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    subset = f"clive-train, every {args.step}. row of mos.csv ({len(files)} of {len(read_mos(args.clive / 'mos.csv'))} images)"
    entries = {}
    for (b, p), s, new in zip(paths[1:], scorers[1:], scores[1:]):
        srcc = float(spearmanr(new, mos)[0])
        entries[f"{b} {p}"] = {
            "backend": s.backend.describe(),
            "against": "torch eager fp32, the model's default head",
            "images": subset,
            "srcc_fp32": round(srcc_ref, 5),
            "srcc": round(srcc, 5),
            "srcc_change": round(srcc - srcc_ref, 5),
            "mean_abs_score_change": round(float(np.abs(new - ref).mean()), 4),
            "max_abs_score_change": round(float(np.abs(new - ref).max()), 4),
            "measured": f"{datetime.date.today().isoformat()}, {command}",
            "cpu": cpu_summary(),
        }
    args.output.write_text(json.dumps(entries, indent=1))
    print(json.dumps(entries, indent=1))
    if args.write_card:
        card_path = weights if weights.suffix == ".json" else None
        if card_path is None:
            raise SystemExit("--write-card needs a model card (.json) as --weights")
        card = json.loads(card_path.read_text())
        card.setdefault("precisions", {}).update(entries)
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"{card_path}: precisions {', '.join(entries)} written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

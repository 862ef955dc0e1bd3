"""Speed of one 1080p frame (full and half scale) for two models on the same backend, as a ratio from one run.
Answered: builtin-v3 runs 3.6x faster than builtin-v1 and at 0.92x of builtin-v2 (its branch costs 13 GFLOP/frame).

    python experiments/model_speed.py --baseline runs/v1/builtin.json          # builtin-v1 vs the built-in model

The baseline is timed in the same process, round-robin with the candidate (bench.compare_models), because
absolute times on a shared machine drift; the ratio is what the README reports. The old built-in's card and
weights come from git history: ``git show <rev>:contrique_video/assets/builtin.pt > runs/v1/builtin.pt``
(and ``builtin.json`` beside it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contrique_video.api import builtin_weights
from contrique_video.backends.bench import compare_models
from contrique_video.models.card import is_card, read_card


def name(path: Path) -> str:
    return read_card(path).id if is_card(path) else path.name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="checkpoint or card timed first (the 1.00x row)")
    ap.add_argument("--model", type=Path, help="checkpoint or card to compare (default: the built-in model)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args(argv)
    model = args.model or builtin_weights()
    rows = compare_models({name(args.baseline): args.baseline, name(model): model}, args.backend, args.precision,
                          args.frames, args.repeats, args.threads)
    print("| model | backend | s/frame (1080p, both scales) | vs baseline | GFLOP/frame |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['backend']} | {r['seconds_per_frame']:.2f} | {r['speedup']:.2f}x | {r['gflop_per_frame']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

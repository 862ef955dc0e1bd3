"""First-run, start-up and per-frame speed, each against the official eager ResNet-50 path in the same run.

The start-up part is ``contrique-video bench --startup`` (:func:`contrique_video.backends.startup.measure_startup`:
each command a fresh process on a new cache folder, wall and CPU seconds of the child): the built-in model's
``score`` of 6 frames of a 1080p H.264 clip, first run and warm, and of one 64x64 PNG; the same with
official-layout weights (random-init ResNet-50, speed only) through ``features``; the official code's eager path
end to end on the clip and on the PNG, the baselines. Then seconds per 1080p frame per backend
(``backends.bench.speed_table``) for both models, against the official eager ResNet-50 per frame.

Writes results/speed.csv afresh (one row per number: date, CPU model, flags, commit, command, model, backend,
precision, metric, value, ratio: the baseline's seconds over these).

    python experiments/speed_first_run.py [--threads 2] [-o results/speed.csv]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from datetime import date
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["date", "cpu", "flags", "commit", "command", "model", "backend", "precision", "metric", "value", "ratio"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "results" / "speed.csv")
    parser.add_argument("--per-frame", action=argparse.BooleanOptionalAction, default=True,
                        help="also time seconds per 1080p frame per backend (a few minutes)")
    args = parser.parse_args()

    from contrique_video.api import builtin_card, builtin_weights
    from contrique_video.backends.cpu import RELEVANT_FLAGS, read_cpuinfo
    from contrique_video.backends.startup import measure_startup, official_layout_checkpoint

    cpu, flags = read_cpuinfo()
    flags = " ".join(f for f in RELEVANT_FLAGS if f in flags)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    builtin = builtin_card()["id"]
    rows = []

    def row(command, model, backend, precision, metric, value, ratio):
        rows.append({"date": date.today().isoformat(), "cpu": cpu, "flags": flags, "commit": commit, "command": command,
                     "model": model, "backend": backend, "precision": precision, "metric": metric,
                     "value": f"{value:.3f}", "ratio": f"{ratio:.2f}"})

    result = measure_startup(args.threads)
    print(result["table"], flush=True)
    for r in result["rows"]:
        model = builtin if r["model"] == "built-in" else r["model"]
        backend, precision = ("torch eager NCHW", "fp32") if r["backend"] == "official eager" else ("auto", "auto")
        row(r["command"], model, backend, precision, f"{r['run']}_wall_s", r["wall_s"], r["speedup_wall"])
        row("same", model, backend, precision, f"{r['run']}_cpu_s", r["cpu_s"], r["speedup_cpu"])

    if args.per_frame:
        import torch

        from contrique_video.backends import paths
        from contrique_video.backends.bench import speed_table

        torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["CONTRIQUE_VIDEO_CACHE"] = str(Path(tmp) / "cache")
            r50 = official_layout_checkpoint(Path(tmp) / "r50.pt")
            base = None  # the official eager ResNet-50's seconds per frame, measured first
            for model, weights in (("resnet50", r50), (builtin, builtin_weights())):
                pairs = [p for p in paths("cpu") if p[0] in ("openvino", "onnxruntime")]
                table, _ = speed_table(weights, pairs, frames=2, repeats=1, threads=args.threads)
                base = base or table[0].seconds_per_frame
                for r in table:
                    row("backends.bench.speed_table, 2 frames of 1080p, best of 1", model, r.backend, "",
                        "s_per_1080p_frame", r.seconds_per_frame, base / r.seconds_per_frame)
                    print(f"{model:10} {r.backend:30} {r.seconds_per_frame:6.2f} s/frame "
                          f"{base / r.seconds_per_frame:5.2f}x", flush=True)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=FIELDS).to_csv(args.output, index=False)  # afresh: superseded rows go
    print(f"wrote {len(rows)} rows to {args.output}")


if __name__ == "__main__":
    main()

"""First-run, start-up and per-frame speed, each against the official eager ResNet-50 path in the same run.

Measures on a clean cache (a new CONTRIQUE_VIDEO_CACHE folder), each command in a fresh process, wall and CPU
(user + sys of the child) seconds:

- built-in model: ``score clip.mp4 --frames 6`` on a 1080p H.264 clip, first run (empty cache) and warm; a
  warm one-image score (64x64 PNG); seconds per 1080p frame per backend (``backends.bench.speed_table``);
- official-layout weights (a random-init ResNet-50 in the official CONTRIQUE layout, for speed only):
  ``features clip.mp4 --frames 6 --weights r50.pt`` first run and warm;
- the baseline: the official code's path end to end, in a fresh process: import torch, load the ResNet-50, decode
  the clip with PyAV, run the 6 sampled frames through eager PyTorch fp32 (NCHW) at both scales.

Writes results/speed.csv (one row per number: date, CPU model, flags, commit, command, model, backend,
precision, metric, value, ratio against the baseline's end-to-end seconds or its seconds per frame).

    python experiments/speed_first_run.py [--threads 2] [-o results/speed.csv]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from contrique_video.timing import time_call

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "contrique_video"]
FIELDS = ["date", "cpu", "flags", "commit", "command", "model", "backend", "precision", "metric", "value", "ratio"]

OFFICIAL = """
import sys, numpy as np, av, torch
from contrique_video.backends.pytorch import TorchBackend
from contrique_video.models import load_model
from contrique_video.models.transforms import TwoScale
torch.set_num_threads(int(sys.argv[3]))
with av.open(sys.argv[1]) as c:
    frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
picked = [frames[round(i * (len(frames) - 1) / 5)] for i in range(6)]
encoder = TorchBackend(load_model(sys.argv[2]), channels_last=False, preprocess=TwoScale())
print(encoder(picked).shape)
"""


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + sys of the child; this process only waits) of one fresh process, and its
    stderr, timed once: a warm-up would fill the cache the first run is about."""
    took = time_call(lambda: subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True), repeats=1,
                     warmup=0)
    if took.result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {took.result.stderr.strip().splitlines()[-1:]}")
    return took.best, took.cpu_best, took.result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "results" / "speed.csv")
    parser.add_argument("--per-frame", action=argparse.BooleanOptionalAction, default=True,
                        help="also time seconds per 1080p frame per backend (a few minutes)")
    args = parser.parse_args()

    from PIL import Image

    from contrique_video.backends.bench import sample_frames, write_clip
    from contrique_video.backends.cpu import RELEVANT_FLAGS, read_cpuinfo
    from contrique_video.models.contrique import Contrique

    cpu, flags = read_cpuinfo()
    flags = " ".join(f for f in RELEVANT_FLAGS if f in flags)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows = []

    def row(command, model, backend, precision, metric, value, base):
        rows.append({"date": date.today().isoformat(), "cpu": cpu, "flags": flags, "commit": commit, "command": command,
                     "model": model, "backend": backend, "precision": precision, "metric": metric,
                     "value": f"{value:.3f}", "ratio": f"{base / value:.2f}" if base else ""})
        print(f"{model:10} {backend:22} {metric:28} {value:8.2f}" + (f"  {base / value:5.2f}x" if base else ""),
              flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip, png, r50 = tmp / "clip1080.mp4", tmp / "one.png", tmp / "r50.pt"
        write_clip(clip, 1, (1080, 1920))  # 24 frames of a pan over a photo
        Image.fromarray(sample_frames(1, (64, 64))[0]).save(png)
        import torch

        torch.manual_seed(0)
        torch.save(Contrique("resnet50").state_dict(), r50)  # official layout, random init: speed only
        env = {**os.environ, "CONTRIQUE_VIDEO_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": str(args.threads),
               "PYTHONPATH": str(ROOT)}

        official = [sys.executable, "-c", OFFICIAL, str(clip), str(r50), str(args.threads)]
        base_wall, base_cpu, _ = timed(official, env)
        row("official eager ResNet-50, 6 frames (python -c, see script)", "resnet50", "torch eager NCHW", "fp32",
            "end_to_end_wall_s", base_wall, base_wall)
        row("same", "resnet50", "torch eager NCHW", "fp32", "end_to_end_cpu_s", base_cpu, base_cpu)

        threads = ["--threads", str(args.threads)]
        score = [*CLI, "-q", "score", str(clip), "--frames", "6", *threads]
        for label in ("first_run", "warm"):
            wall, cpu_s, err = timed(score, env)
            row("contrique-video score clip1080.mp4 --frames 6", "builtin-v3", "auto", "auto", f"{label}_wall_s", wall,
                base_wall)
            row("same", "builtin-v3", "auto", "auto", f"{label}_cpu_s", cpu_s, base_cpu)
        for _ in range(2):
            wall, cpu_s, _ = timed([*CLI, "-q", "score", str(png), *threads], env)
        row("contrique-video score one.png (64x64, warm)", "builtin-v3", "auto", "auto", "startup_wall_s", wall, None)
        row("same", "builtin-v3", "auto", "auto", "startup_cpu_s", cpu_s, None)

        feats = [*CLI, "-q", "features", str(clip), "--frames", "6", "--weights", str(r50), *threads]
        for label in ("first_run", "warm"):
            wall, cpu_s, _ = timed([*feats, "-o", str(tmp / f"{label}.npy")], env)
            row("contrique-video features clip1080.mp4 --frames 6 --weights r50.pt", "resnet50", "auto", "auto",
                f"{label}_wall_s", wall, base_wall)
            row("same", "resnet50", "auto", "auto", f"{label}_cpu_s", cpu_s, base_cpu)

        if args.per_frame:
            from contrique_video.api import builtin_weights
            from contrique_video.backends import paths
            from contrique_video.backends.bench import speed_table

            os.environ["CONTRIQUE_VIDEO_CACHE"] = env["CONTRIQUE_VIDEO_CACHE"]
            torch.set_num_threads(args.threads)
            base = None  # the official eager ResNet-50's seconds per frame, measured first
            for model, weights in (("resnet50", r50), ("builtin-v3", builtin_weights())):
                pairs = [p for p in paths("cpu") if p[0] in ("openvino", "onnxruntime")]
                table, _ = speed_table(weights, pairs, frames=2, repeats=1, threads=args.threads)
                base = base or table[0].seconds_per_frame
                for r in table:
                    row("backends.bench.speed_table, 2 frames of 1080p, best of 1", model, r.backend, "",
                        "s_per_1080p_frame", r.seconds_per_frame, base)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    new = not args.output.is_file()
    with args.output.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.output}")


if __name__ == "__main__":
    main()

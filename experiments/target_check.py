"""Issue #14's speed targets, timed in one process against the official path (round-robin, ratios).
Answered: issue #14's speed targets against the official eager fp32 path, as ratios in one process.

Rows: the official code's path on a CONTRIQUE ResNet-50 (eager PyTorch fp32, NCHW; the 1.00x baseline), the
ResNet-50 on each ``--resnet-paths`` path and on auto's choice for it, and the built-in model on auto's choice
and on each ``--builtin-paths`` path. Per row: seconds per 1080p frame (both scales, preprocessing included),
speed-up over the baseline, GFLOP/s and its share of this machine's measured matmul peak at the row's precision.

    python experiments/target_check.py --resnet CONTRIQUE_checkpoint25.tar

Without official weights, a random-init ResNet-50 in the official layout stands in (``--resnet`` any file made
by ``torch.save(Contrique("resnet50").state_dict(), path)``): speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resnet", type=Path, required=True)
    ap.add_argument("--resnet-paths", default="onnxruntime:fp32,torch:bf16")
    ap.add_argument("--builtin-paths", default="torch:bf16")
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from contrique_video.api import builtin_weights
    from contrique_video.backends import open_backend
    from contrique_video.backends.cpu import cpu_summary, native
    from contrique_video.backends.pytorch import TorchBackend
    from contrique_video.backends.bench import (
        FULL_HD,
        matmul_peak,
        network_gflop,
        sample_frames,
        time_backends,
    )
    from contrique_video.errors import ContriqueError
    from contrique_video.models import load_model

    builtin = builtin_weights()
    rows = [("resnet50", args.resnet, "official eager NCHW", "fp32")]
    rows += [("resnet50", args.resnet, *p.split(":")) for p in args.resnet_paths.split(",") if p]
    rows += [("resnet50", args.resnet, "auto", "auto"), ("builtin", builtin, "auto", "auto")]
    rows += [("builtin", builtin, *p.split(":")) for p in args.builtin_paths.split(",") if p]
    gflop = {"resnet50": network_gflop(FULL_HD, load_model(args.resnet)), "builtin": network_gflop(FULL_HD, load_model(builtin))}
    peaks = {"fp32": matmul_peak("fp32")}
    if native("bf16"):
        peaks["bf16"] = matmul_peak("bf16")
    backends, labels = [], []
    for model, path, backend, precision in rows:
        try:
            if backend == "official eager NCHW":
                b = TorchBackend(load_model(path), channels_last=False)
            else:
                b = open_backend(path, backend, precision, "cpu")
        except ContriqueError as exc:
            print(f"skipping {model} {backend} {precision}: {exc}", file=sys.stderr)
            continue
        label = f"{model}: {b.describe()}"
        if label in labels:  # auto chose a path already in the table: mark it instead of timing it twice
            labels[labels.index(label)] += " (auto's choice)"
            continue
        backends.append((model, b))
        labels.append(label + (" (auto's choice)" if backend == "auto" else ""))
    timings = time_backends([b for _, b in backends], sample_frames(args.frames), args.repeats)
    base = timings[0][0]
    print(f"CPU: {cpu_summary()}; {torch.get_num_threads()} threads; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| model: path | s/frame (1080p, both scales) | vs official eager ResNet-50 | GFLOP/s | of peak at its precision |")
    print("|---|---:|---:|---:|---:|")
    for label, (model, b), (seconds, _) in zip(labels, backends, timings):
        rate = gflop[model] / seconds
        print(f"| {label} | {seconds:.2f} | {base / seconds:.2f}x | {rate:.0f} | "
              f"{100 * rate / peaks.get(b.precision, peaks['fp32']):.0f}% |")
    print(f"\nGFLOP per frame: ResNet-50 {gflop['resnet50']:.0f}, built-in {gflop['builtin']:.0f}; measured peaks: "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

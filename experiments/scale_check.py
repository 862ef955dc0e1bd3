"""Local scaling of ``--engine local``: the same clips scored with 1 and then 2 worker processes (1 thread each).
Answered: two local workers give the same records as one, and the speed-up on this 2-core machine.

    python experiments/scale_check.py --clips 8 --frames 8 --size 320x240

Generates the clips in a temporary folder, times each run end to end (cluster start and model loads
included, as a user sees it) and with the models already loaded (the steady state), checks that both
runs give the same records, and prints the speed-up. Report ``uptime``'s load with the figure: on a shared
machine the second worker competes with whatever else runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("CONTRIQUE_VIDEO_BACKEND", "torch")  # eager PyTorch: no per-size compile to skew the timing

from contrique_video.backends.bench import write_clip  # noqa: E402
from contrique_video import score_many  # noqa: E402
from contrique_video.decode.sampler import Sampling  # noqa: E402
from contrique_video.runs.dask import connect, load_model, task_settings  # noqa: E402
from contrique_video.timing import time_call  # noqa: E402


def timed_run(paths: list[str], workers: int, frames: int) -> tuple[float, float, list[dict]]:
    """(end-to-end seconds, seconds with the models already loaded, records) for one cluster size, each timed once."""

    def run() -> tuple[float, list[dict]]:
        with connect("local", workers) as client:
            client.run(load_model, settings)  # load the model in every worker, as a long run amortises it
            steady = time_call(lambda: [o.record() for o in score_many(paths, executor=client.scheduler.address,
                                                                       sampling=Sampling("frames", frames))],
                               repeats=1, warmup=0)
        return steady.best, steady.result

    settings = task_settings(None)
    total = time_call(run, repeats=1, warmup=0)
    steady, got = total.result
    return total.best, steady, sorted(got, key=lambda r: r["file"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8, help="frames scored per clip")
    parser.add_argument("--size", default="320x240")
    args = parser.parse_args()
    w, h = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(write_clip(Path(tmp) / f"c{i:02d}.mp4", seconds=1, size=(h, w), fps=2 * args.frames + i))
                 for i in range(args.clips)]
        print(f"load before: {os.getloadavg()[0]:.2f}; {args.clips} clips {args.size}, {args.frames} frames each, "
              f"built-in ResNet-50, eager fp32, 1 thread per worker")
        runs = {}
        for n in (1, 2):
            total, steady, records = timed_run(paths, n, args.frames)
            runs[n] = (total, steady, records)
            print(f"{n} worker(s): {total:6.1f} s end to end, {steady:6.1f} s with models loaded, "
                  f"load now {os.getloadavg()[0]:.2f}")
    same = all(a.get("score") == b.get("score") for a, b in zip(runs[1][2], runs[2][2]))
    print(f"speed-up 2 vs 1: {runs[1][0] / runs[2][0]:.2f}x end to end, {runs[1][1] / runs[2][1]:.2f}x steady state; "
          f"records identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Peak resident memory (RSS) of the default ``contrique-video score`` at 720p, 1080p and 2160p.

    python experiments/memory_bench.py --label after                  # appends to results/memory.csv
    python experiments/memory_bench.py --label before --heights 720,1080 --extra "--batch-size 4"

Each measurement is one fresh ``python -m contrique_video score CLIP`` process; its peak RSS is the kernel's
``ru_maxrss`` for that child (``os.wait4``), the number ``/usr/bin/time -f %M`` prints. The clips are the
sample (natural content) looped and scaled with bicubic to each size, encoded with x264, written once under
--workdir. Memory, unlike time, does not drift with other load on a shared machine, so absolute figures are
reported; seconds are given for reference only.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg

from contrique_video.timing import time_call

ROOT = Path(__file__).resolve().parents[1]
SIZES = {720: (1280, 720), 1080: (1920, 1080), 2160: (3840, 2160)}
FIELDS = ["date", "cpu", "commit", "label", "command", "resolution", "peak_rss_mb", "seconds", "exit_code"]


def make_clip(height: int, workdir: Path, seconds: float) -> Path:
    """The sample looped to ``seconds`` and scaled to ``height`` (bicubic), x264 CRF 23."""
    w, h = SIZES[height]
    path = workdir / f"clip_{height}p.mp4"
    if not path.exists():
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-stream_loop", "-1",
                        "-i", str(ROOT / "samples" / "sample.mp4"), "-t", str(seconds),
                        "-vf", f"scale={w}:{h}:flags=bicubic", "-c:v", "libx264", "-preset", "ultrafast",
                        "-crf", "23", str(path)], check=True)
    return path


def peak_rss(command: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit code) of one child process, timed once."""

    def run() -> tuple[float, int]:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code:
            sys.stderr.write(stderr.decode(errors="replace")[-2000:])
        return usage.ru_maxrss / 1024, code

    took = time_call(run, repeats=1, warmup=0)
    return took.result[0], took.best, took.result[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heights", default="720,1080,2160", help="clip heights, from 720, 1080, 2160")
    ap.add_argument("--label", required=True, help="what is measured, e.g. before / after")
    ap.add_argument("--extra", default="", help="extra score options, e.g. '--batch-size 4'")
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/contrique-memory-bench"))
    ap.add_argument("--csv", type=Path, default=ROOT / "results" / "memory.csv")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    new = not args.csv.exists()
    with open(args.csv, "a", newline="") as f:
        out = csv.DictWriter(f, FIELDS)
        if new:
            out.writeheader()
        for height in (int(h) for h in args.heights.split(",")):
            clip = make_clip(height, args.workdir, args.seconds)
            command = [sys.executable, "-m", "contrique_video", "score", str(clip), "-q", *shlex.split(args.extra)]
            shown = f"contrique-video score clip_{height}p.mp4 -q {args.extra}".strip()
            mb, seconds, code = peak_rss(command)
            row = dict(date=datetime.date.today().isoformat(), cpu=cpu_name(), commit=commit, label=args.label,
                       command=shown, resolution=f"{SIZES[height][0]}x{SIZES[height][1]}",
                       peak_rss_mb=round(mb), seconds=round(seconds, 1), exit_code=code)
            out.writerow(row)
            f.flush()
            print(f"{row['resolution']}: {row['peak_rss_mb']} MB peak RSS, {row['seconds']} s, exit {code}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Batch reliability check: 100 generated files, 10 of them broken, a kill half way, then --resume.
Answered: a batch killed half way (SIGKILL or SIGTERM) keeps only complete records and --resume scores exactly the rest (90 scores, 10 failures, exit 1).

    python experiments/batch_check.py [--files 100] [--signal KILL|TERM] [--dir /tmp/batch-check]

Scores with a small random ResNet-18 checkpoint (the pipeline, not the model, is under test). Prints what
each phase did and exits 1 if any expectation fails: the killed run's output holds only complete records,
the resumed run scores exactly the inputs not yet recorded, and the final output has every input once
(90 scores, 10 failures with reasons) with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from contrique_video.backends.bench import write_clip  # noqa: E402
from contrique_video.models.contrique import Contrique  # noqa: E402
from contrique_video.models.head import LinearHead  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    ap.add_argument("--dir", default="/tmp/batch-check")
    args = ap.parse_args()
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    (root / "media").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(Contrique("resnet18").state_dict(), root / "r18.pt")
    LinearHead(weights=np.random.default_rng(0).normal(size=1024), intercept=50.0, name="check",
               features="weights:r18.pt", trained_on="random", scale="MOS", range=(0, 100),
               higher_is_better=True).save(root / "head.json")
    rng = np.random.default_rng(0)
    broken = set(rng.choice(args.files, size=args.files // 10, replace=False).tolist())
    for i in range(args.files):
        path = root / "media" / f"clip{i:03d}.mp4"
        write_clip(path, seconds=1, size=(64, 96), fps=8)
        if i in broken:  # cut the file to a third: the index is gone, FFmpeg cannot open it
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    out = root / "scores.jsonl"
    cmd = [sys.executable, "-m", "contrique_video", "-q", "score", str(root / "media"), "--weights",
           str(root / "r18.pt"), "--head", str(root / "head.json"), "--frames", "2", "--format", "json",
           "--output", str(out)]

    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and (not out.exists() or len(out.read_text().splitlines()) < args.files // 2):
        time.sleep(0.02)
    proc.send_signal(getattr(signal, f"SIG{args.signal}"))
    proc.wait()
    lines = out.read_text().splitlines(keepends=True)
    complete = [ln for ln in lines if ln.endswith("\n")]
    first = [json.loads(ln) for ln in complete]
    print(f"killed run: SIG{args.signal} after {time.time() - t0:.1f} s, exit {proc.returncode}, "
          f"{len(first)} complete records, {len(lines) - len(complete)} cut line(s)")

    t0 = time.time()
    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    final = [json.loads(ln) for ln in out.read_text().splitlines()]
    rescored = len(final) - len(first)
    errors = [r for r in final if "error" in r]
    print(f"resumed run: {time.time() - t0:.1f} s, exit {res.returncode}, {rescored} inputs scored now, "
          f"{len(final)} records in all, {len(final) - len(errors)} scores, {len(errors)} failures")
    for r in errors[:3]:
        print(f"  e.g. {Path(r['file']).name}: {r['error'][:100]}")

    checks = {
        "every input recorded once": len(final) == args.files and len({r["file"] for r in final}) == args.files,
        "finished records kept as they were": final[: len(first)] == first,
        "nothing rescored": rescored == args.files - len(first),
        "the broken files are the failures": {Path(r["file"]).name for r in errors}
        == {f"clip{i:03d}.mp4" for i in broken},
        "exit code 1 (some failed)": res.returncode == 1,
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

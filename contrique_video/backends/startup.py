"""First run, warm run and one-image start-up of the CLI, each against the official eager path in the same run.

Per-frame speed (:mod:`contrique_video.backends.bench`) hides what a new user, a CI job or a fresh Dask worker
pays first: imports, model loading, preparing a backend on an empty cache. So here every command runs in a fresh
process of ``python -m contrique_video`` with a new ``CONTRIQUE_VIDEO_CACHE`` folder, timed once for wall and
CPU seconds (the child's user + system) by :mod:`contrique_video.timing`:

- the built-in model: ``score`` of N frames of a 1080p H.264 clip, first run (empty cache) then warm, and a
  warm ``score`` of one 64x64 PNG (start-up);
- official-layout weights (a random-init ResNet-50 in CONTRIQUE's layout, for speed only): ``features`` of the
  same frames, first run and warm, and of the PNG;
- the baseline: the official code's path, end to end in a fresh process (import torch, load the ResNet-50,
  decode with PyAV, eager PyTorch fp32 in NCHW at both scales), on the clip and on the PNG.

Ratios are the baseline's seconds over each row's (above 1: faster than the official path); a shared machine
drifts, so read those rather than the seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from contrique_video.backends.bench import FULL_HD, sample_frames, write_clip
from contrique_video.backends.cpu import cpu_summary
from contrique_video.errors import ContriqueError
from contrique_video.timing import time_call

#: The official code's path, run with ``python -c``: argv is INPUT WEIGHTS FRAMES THREADS (0: all cores).
OFFICIAL = """
import sys
import av, torch
from contrique_video.backends.pytorch import TorchBackend
from contrique_video.models import load_model
from contrique_video.models.transforms import TwoScale
path, weights, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
with av.open(path) as container:
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
picked = [frames[round(i * (len(frames) - 1) / max(n - 1, 1))] for i in range(n)]
encoder = TorchBackend(load_model(weights), channels_last=False, preprocess=TwoScale())
print(encoder(picked).shape)
"""

#: What each run is, for the table.
RUNS = {"end_to_end": "end to end", "first_run": "first run (empty cache)", "warm": "warm",
        "startup": "one 64x64 image"}


@dataclass(frozen=True)
class StartupRow:
    """One timed process; ``speedup_*`` is the baseline's seconds over these (the official path's own rows: 1)."""

    model: str  # "built-in" or "resnet50" (official layout)
    backend: str  # "official eager" for the baseline, "auto" for the CLI
    run: str  # a key of RUNS
    command: str
    wall_s: float
    cpu_s: float
    speedup_wall: float
    speedup_cpu: float


def timed(cmd: list[str], env: dict[str, str], warmup: int = 0) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process (its user + system; this process only waits), timed once: a
    repeat would find the cache the first run is about already filled."""
    took = time_call(lambda: subprocess.run(cmd, env=env, capture_output=True, text=True), repeats=1,
                     warmup=warmup)
    if took.result.returncode:
        last = (took.result.stderr.strip().splitlines() or ["no message"])[-1]
        raise ContriqueError(f"{' '.join(cmd[:6])} ... failed: {last}")
    return took.best, took.cpu_best


def child_env(cache: Path, threads: int | None) -> dict[str, str]:
    """This environment (so the child imports this copy of the package) with a new cache folder and the thread
    count."""
    env = {**os.environ, "CONTRIQUE_VIDEO_CACHE": str(cache)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def official_layout_checkpoint(path: Path) -> Path:
    """A ResNet-50 in the official CONTRIQUE layout with random weights (seed 0): the official network's speed
    without its weights, which this package does not ship."""
    import torch

    from contrique_video.models.contrique import Contrique

    torch.manual_seed(0)
    torch.save(Contrique("resnet50").state_dict(), path)
    return path


def measure_startup(threads: int | None = None, frames: int = 6, size: tuple[int, int] = FULL_HD) -> dict:
    """Time the runs of the module docstring; ``frames`` of a 1 s clip of ``size`` (H, W). Returns a JSON-ready
    dict: ``rows`` (:class:`StartupRow` as dicts), ``cpu``, ``threads``, ``size``, ``frames`` and the markdown
    ``table``. Takes 2-3 minutes at 1080p on two cores."""
    from PIL import Image

    cli = [sys.executable, "-m", "contrique_video", "-q"]
    opts = ["--threads", str(threads)] if threads else []
    with tempfile.TemporaryDirectory(prefix="contrique-startup-") as tmp:
        folder = Path(tmp)
        clip, png, r50 = folder / "clip.mp4", folder / "one.png", folder / "r50.pt"
        write_clip(clip, 1, size)
        Image.fromarray(sample_frames(1, (64, 64))[0]).save(png)
        official_layout_checkpoint(r50)
        env = child_env(folder / "cache", threads)
        rows: list[StartupRow] = []
        base: dict[str, tuple[float, float]] = {}

        def add(model: str, backend: str, run: str, command: str, cmd: list[str], warmup: int = 0) -> None:
            wall, cpu = timed(cmd, env, warmup)
            if backend == "official eager":
                base[run] = (wall, cpu)
            ref_wall, ref_cpu = base["startup" if run == "startup" else "end_to_end"]
            rows.append(StartupRow(model, backend, run, command, wall, cpu, ref_wall / wall, ref_cpu / cpu))

        official = [sys.executable, "-c", OFFICIAL]
        add("resnet50", "official eager", "end_to_end", f"official eager ResNet-50, {frames} frames",
            [*official, str(clip), str(r50), str(frames), str(threads or 0)])
        add("resnet50", "official eager", "startup", "official eager ResNet-50, one.png",
            [*official, str(png), str(r50), "1", str(threads or 0)])
        name = f"clip.mp4 ({size[1]}x{size[0]} H.264) --frames {frames}"
        for run in ("first_run", "warm"):
            add("built-in", "auto", run, f"contrique-video score {name}",
                [*cli, "score", str(clip), "--frames", str(frames), *opts])
        add("built-in", "auto", "startup", "contrique-video score one.png", [*cli, "score", str(png), *opts],
            warmup=1)
        features = [*cli, "features", "--weights", str(r50), *opts, "-o"]
        for run in ("first_run", "warm"):
            add("resnet50", "auto", run, f"contrique-video features {name} --weights r50.pt",
                [*features, str(folder / f"{run}.npy"), str(clip), "--frames", str(frames)])
        add("resnet50", "auto", "startup", "contrique-video features one.png --weights r50.pt",
            [*features, str(folder / "one.npy"), str(png)], warmup=1)
    result = {"rows": [asdict(r) for r in rows], "cpu": cpu_summary(), "threads": threads,
              "size": f"{size[1]}x{size[0]}", "frames": frames}
    return {**result, "table": markdown(rows, result)}


def markdown(rows: list[StartupRow], info: dict) -> str:
    lines = ["| model | path | run | wall s | CPU s | vs official eager (wall) | vs official eager (CPU) |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        model = "ResNet-50 (official layout)" if r.model == "resnet50" else r.model
        lines.append(f"| {model} | {r.backend} | {RUNS[r.run]} | {r.wall_s:.2f} | {r.cpu_s:.2f} | "
                     f"{r.speedup_wall:.2f}x | {r.speedup_cpu:.2f}x |")
    lines.append(f"\n{info['frames']} frames of a {info['size']} H.264 clip; each run a fresh process on one new cache "
                 f"folder (the CLI's one image after an untimed one, so warm); one image compares with the official "
                 f"path on that image; threads: {info['threads'] or 'all'}; CPU: {info['cpu']}")
    return "\n".join(lines)

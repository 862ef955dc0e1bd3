"""Full-reference VMAF beside our no-reference score: libvmaf run by an ffmpeg binary on the same pair.

Engineers trust VMAF; putting it next to our score, frame by frame, shows where the two agree and where
they do not. libvmaf is reached through an ffmpeg that has it: the user's (``--ffmpeg``), else the static
build of ``imageio-ffmpeg`` (``pip install 'contrique-video[vmaf]'``). VMAF is computed on every frame
(its motion feature needs each frame's predecessor, so frames cannot be skipped without changing it);
our records then carry the values at the frames we scored, pooled over those frames, and libvmaf's own
pooled mean over all frames.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from contrique_video.errors import InputError, UnsupportedError

log = logging.getLogger("contrique_video")
DEFAULT_MODEL = "vmaf_v0.6.1"


def vmaf_ffmpeg(ffmpeg: str | os.PathLike | None = None) -> str:
    """The ffmpeg that will run libvmaf: ``ffmpeg`` if given, else imageio-ffmpeg's static build."""
    if ffmpeg:
        from contrique_video.ffmpeg import find_ffmpeg

        return find_ffmpeg(ffmpeg)
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise UnsupportedError("--reference needs an ffmpeg with libvmaf: pip install 'contrique-video[vmaf]' "
                               "(imageio-ffmpeg) or pass --ffmpeg PATH") from None


@dataclass
class VmafRun:
    """libvmaf's per-frame scores (``frameNum``, ``vmaf``) and its pooled metrics over every frame."""

    frames: pd.DataFrame
    pooled: dict
    model: str


def run_vmaf(distorted: str | os.PathLike, reference: str | os.PathLike, *, ffmpeg: str | None = None,
             model: str = DEFAULT_MODEL, size: tuple[int, int] | None = None, threads: int | None = None) -> VmafRun:
    """libvmaf on ``distorted`` against ``reference``, both timed from their first frame.

    ``size`` (the reference's, when the two differ) scales the distorted video to it with bicubic
    filtering first, as ffmpeg-quality-metrics does. Failures are one-line :class:`InputError`.
    """
    exe = vmaf_ffmpeg(ffmpeg)
    scale = f"scale={size[0]}:{size[1]}:flags=bicubic," if size else ""
    with tempfile.TemporaryDirectory(prefix="contrique-vmaf-") as tmp:
        log_path = Path(tmp) / "vmaf.json"
        graph = (f"[0:v]{scale}setpts=PTS-STARTPTS[d];[1:v]setpts=PTS-STARTPTS[r];"
                 f"[d][r]libvmaf=model=version={model}:log_fmt=json:log_path={_escape(log_path)}"
                 f":n_threads={threads or os.cpu_count() or 1}")
        cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(distorted), "-i", str(reference),
               "-lavfi", graph, "-f", "null", "-"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        except OSError as exc:
            raise InputError(f"could not run {exe}: {exc.strerror or exc}") from None
        if proc.returncode != 0 or not log_path.is_file():
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            if "libvmaf" in last and ("No such filter" in last or "not found" in last.lower()):
                raise UnsupportedError(f"{exe} has no libvmaf; pass --ffmpeg PATH to one that has it")
            raise InputError(f"VMAF of {Path(distorted).name} against {Path(reference).name} failed: {last}")
        doc = json.loads(log_path.read_text())
    frames = pd.DataFrame([{"frameNum": int(f["frameNum"]), "vmaf": f["metrics"].get("vmaf")} for f in doc["frames"]])
    return VmafRun(frames, doc.get("pooled_metrics", {}).get("vmaf", {}), model)


def _escape(path: Path) -> str:
    """A path as a filter-graph option value (``:``, ``\\`` and ``'`` are special there)."""
    return str(path).replace("\\", "/").replace(":", "\\:").replace("'", "\\'")


def vmaf_mean(distorted: str | os.PathLike, reference: str | os.PathLike, model: str = DEFAULT_MODEL,
              ffmpeg: str | None = None) -> float:
    """libvmaf's pooled mean over every frame of a same-size, same-length pair."""
    return float(run_vmaf(distorted, reference, ffmpeg=ffmpeg, model=model).pooled["mean"])


def add_vmaf(result, reference: str | os.PathLike, *, ffmpeg: str | None = None, model: str = DEFAULT_MODEL) -> None:
    """Put VMAF beside a :class:`~contrique_video.api.VideoScore`: a ``vmaf`` column in its frames (the
    frames we scored, matched by index) and, in its record, ``vmaf`` (mean over those frames),
    ``vmaf_pooled``, ``vmaf_all_frames`` (libvmaf's mean over every frame), ``vmaf_model`` and ``reference``."""
    from contrique_video.encoding.probe import media_info
    from contrique_video.pooling import POOLS, pool

    ref, dist = media_info(reference), media_info(result.file)
    size = (ref.width, ref.height) if (ref.width, ref.height) != (dist.width, dist.height) else None
    run = run_vmaf(result.file, reference, ffmpeg=ffmpeg, model=model, size=size)
    by_index = dict(zip(run.frames["frameNum"], run.frames["vmaf"]))
    values = result.frames["frame"].map(lambda i: by_index.get(int(i))).astype(float)
    missing = int(values.isna().sum())
    if missing == len(values):
        raise InputError(f"{result.file}: VMAF gave no value for any scored frame (the reference has "
                         f"{len(run.frames)} frames)")
    if missing:
        log.warning("%s: no VMAF for %d of %d scored frames (the reference is shorter)", result.file, missing,
                    len(values))
    result.frames["vmaf"] = values
    result.reference = {
        "reference": str(reference),
        "vmaf": pool(values, "mean"),
        "vmaf_pooled": {how: pool(values, how) for how in POOLS},
        "vmaf_all_frames": float(run.pooled["mean"]) if "mean" in run.pooled else None,
        "vmaf_model": run.model,
    }

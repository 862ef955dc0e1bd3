#!/usr/bin/env python3
"""Sampling accuracy study (issue #4, part 3): how far is a sampled video score from the all-frames score?
Answered: how far sampled scores are from the all-frames score (30 clips, 4252 frames); the default --frames N centres one frame in each of N parts.

The head is linear and pooling is the mean of the features, so a video's score is the mean of its per-frame
scores. This script therefore scores EVERY frame of each generated clip once, caches (frame, pts_time, score)
and the duration and frame rate the source reports to ``OUT/cache/<clip>.npz``, and then evaluates any
sampling offline: it replays the real ``Sampling(...).selector(duration, fps)`` over the cached
(index, pts_time) list, exactly as the frame source feeds it, and averages the selected frames' scores.

Clips (deterministic for a given ``--seed``) have changing content: 1-6 shots cut between scikit-image
photos and CLIVE photos (``../shared/data/clive-train/images``, read in place, never copied), each a pan,
zoom or static shot, some with a heavy-compression segment (x264 round trip at CRF 36-51), a blur ramp, a
noise burst or a fade; then the whole clip is encoded at a base CRF. Durations are 4-30 s. Frame rates are
24/25/30/60 on short clips; long clips use low rates (4-15 fps) so that scoring every frame fits the
compute budget (the sampler works on timestamps, so the error depends on how the score changes over time,
not on the frame rate). Some clips have a variable frame rate.

Stages (all by default): ``generate`` writes the clips, ``score`` scores every frame (resumable: cached
clips are skipped), ``evaluate`` prints a markdown table and writes ``OUT/summary.json``.

    python experiments/sampling_study.py --out runs/sampling                  # everything
    nohup python experiments/sampling_study.py --stage score > runs/sampling/score.log 2>&1 &
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIVE = REPO.parent / "shared" / "data" / "clive-train" / "images"
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "camera", "grass",
                  "gravel", "brick", "coins", "clock", "moon")
# (mode, value) of the candidate samplings; "frames" ones are candidates for the default.
CANDIDATES: tuple[tuple[str, float | None], ...] = (
    ("frames", 8), ("frames", 16), ("frames", 24), ("frames", 32), ("frames", 48), ("frames", 64),
    ("fps", 1), ("fps", 2),
)
TOLERANCE = 1.0  # points on the head's 0-100 scale
TARGET_FRACTION = 0.95


# --------------------------------------------------------------------------- clip specifications


@dataclass
class Shot:
    """One shot between two cuts: a photo, a camera move and at most one distortion."""

    photo: str  # "skimage:NAME" or "clive:FILE"
    seconds: float
    motion: str  # pan | zoom_in | zoom_out | static
    distortion: str  # none | crf | blur | noise | fade
    crf: int = 0  # for "crf": x264 CRF of the round trip
    strength: float = 0.0  # blur radius at the end of the ramp, or noise sigma
    cx: float = 0.5
    cy: float = 0.5


@dataclass
class ClipSpec:
    name: str
    fps: float
    vfr: bool
    base_crf: int
    shots: list[Shot] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.shots)


def clip_specs(count: int, seed: int) -> list[ClipSpec]:
    """The clip set: a third short (4-8 s), medium (8-16 s) and long (16-30 s) clips, interleaved so that
    any prefix of the list is a balanced set (scoring can stop early and still be evaluated)."""
    rng = np.random.default_rng(seed)
    clive = sorted(p.name for p in CLIVE.iterdir()) if CLIVE.is_dir() else []
    specs = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            seconds, fps = rng.uniform(4, 8), float(rng.choice([24, 25, 30, 60] if i % 6 else [24, 25, 30]))
            if fps == 60:
                seconds = min(seconds, 4.5)
        elif kind == 1:
            seconds, fps = rng.uniform(8, 16), float(rng.choice([10, 12, 15]))
        else:
            seconds, fps = rng.uniform(16, 30), float(rng.choice([4, 5, 6]))
        n_shots = int(rng.integers(1, 7))
        lengths = rng.dirichlet(np.full(n_shots, 2.0)) * seconds
        shots = []
        for length in lengths:
            if clive and rng.random() < 0.5:
                photo = "clive:" + str(rng.choice(clive))
            else:
                photo = "skimage:" + str(rng.choice(SKIMAGE_PHOTOS))
            distortion = str(rng.choice(["none", "crf", "blur", "noise", "fade"], p=[0.35, 0.25, 0.15, 0.15, 0.10]))
            shots.append(Shot(
                photo=photo, seconds=float(length),
                motion=str(rng.choice(["pan", "zoom_in", "zoom_out", "static"])),
                distortion=distortion, crf=int(rng.integers(36, 52)),
                strength=float(rng.uniform(2, 6) if distortion == "blur" else rng.uniform(10, 40)),
                cx=float(rng.uniform(0.35, 0.65)), cy=float(rng.uniform(0.35, 0.65)),
            ))
        specs.append(ClipSpec(f"clip{i:02d}", fps, bool(i % 7 == 3), int(rng.choice([18, 23, 28])), shots))
    return specs


# --------------------------------------------------------------------------- rendering


def _photo(name: str, width: int, height: int):
    """The photo as an RGB PIL image scaled so a pan or zoom-out window always fits."""
    from PIL import Image
    from skimage import data

    source, key = name.split(":", 1)
    img = Image.open(CLIVE / key) if source == "clive" else Image.fromarray(getattr(data, key)())
    img = img.convert("RGB")
    scale = max(width * 1.6 / img.width, height * 1.6 / img.height)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)


def _render(img, shot: Shot, u: float, width: int, height: int) -> np.ndarray:
    """Shot ``shot`` at progress ``u`` in [0, 1): camera move, then its distortion (except CRF, done later)."""
    from PIL import Image, ImageFilter

    ease = 0.5 - 0.5 * math.cos(math.pi * u)
    zoom = {"zoom_in": 1.0 + 0.4 * ease, "zoom_out": 1.4 - 0.4 * ease}.get(shot.motion, 1.0)
    s = 1.0 / zoom  # canvas pixels per output pixel (the canvas is >= 1.6x the output)
    cx, cy = img.width * shot.cx, img.height * shot.cy
    if shot.motion == "pan":
        half = width * s / 2
        cx = half + (img.width - 2 * half) * (0.2 + 0.6 * ease)
    x0 = min(max(cx - width * s / 2, 0), img.width - width * s)
    y0 = min(max(cy - height * s / 2, 0), img.height - height * s)
    frame = img.transform((width, height), Image.Transform.AFFINE, (s, 0, x0, 0, s, y0),
                          resample=Image.Resampling.BICUBIC)
    if shot.distortion == "blur":
        frame = frame.filter(ImageFilter.GaussianBlur(radius=float(shot.strength * u)))
    arr = np.asarray(frame, dtype=np.float32)
    if shot.distortion == "noise" and 0.3 <= u < 0.8:  # a burst in the middle of the shot
        seed = zlib.crc32(f"{shot.photo}:{u:.6f}".encode())
        arr = arr + np.random.default_rng(seed).normal(0, shot.strength, arr.shape)
    if shot.distortion == "fade":
        arr = arr * min(1.0, 4 * u, 4 * (1 - u))  # from black and back to black
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def _encode(frames: list[np.ndarray], times: list[float] | None, fps: float, crf: int, fmt: str, out) -> None:
    """x264 (single thread, so the clips are the same on every run) at ``crf``; ``times`` gives VFR PTS in ms."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                      options={"crf": str(crf), "preset": "fast", "x264-params": "threads=1"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        if times is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if times is None:
                frame.pts, frame.time_base = i, Fraction(1) / Fraction(fps).limit_denominator(1001)
            else:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _round_trip(frames: list[np.ndarray], fps: float, crf: int) -> list[np.ndarray]:
    """The frames after a low-quality x264 encode and decode (blocking, smearing)."""
    import av

    buf = io.BytesIO()
    _encode(frames, None, fps, crf, "matroska", buf)
    buf.seek(0)
    with av.open(buf, "r", format="matroska") as container:
        out = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(out) != len(frames):
        raise RuntimeError(f"round trip gave {len(out)} frames, expected {len(frames)}")
    return out


def make_clip(spec: ClipSpec, path: Path, width: int, height: int) -> Path:
    """Render and encode one clip to ``path`` (MP4)."""
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))  # VFR frame durations
    times: list[float] = []
    t = 0.0
    while t < spec.seconds - 1e-9:
        times.append(t)
        step = 1.0 / spec.fps
        t += step * rng.uniform(0.5, 1.5) if spec.vfr else step
    if not spec.vfr:
        times = [i / spec.fps for i in range(len(times))]
    bounds = np.cumsum([0.0] + [s.seconds for s in spec.shots])
    frames: list[np.ndarray] = []
    for k, shot in enumerate(spec.shots):
        members = [t for t in times if bounds[k] <= t < bounds[k + 1]]
        if not members:
            continue
        img = _photo(shot.photo, width, height)
        shot_frames = [_render(img, shot, float((t - bounds[k]) / shot.seconds), width, height) for t in members]
        if shot.distortion == "crf":
            shot_frames = _round_trip(shot_frames, spec.fps, shot.crf)
        frames += shot_frames
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.mp4")
    _encode(frames, times if spec.vfr else None, spec.fps, spec.base_crf, "mp4", str(tmp))
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- scoring and evaluation


def score_clip(scorer, path: Path, cache: Path) -> None:
    """Score every frame of ``path`` and cache frame, pts_time, score and the source's duration."""
    from contrique_video.decode.sampler import Sampling
    from contrique_video.decode import open_source

    with open_source(path) as src:
        duration, fps = src.duration, src.fps
    result = scorer.score(path, sampling=Sampling("all"))
    tmp = cache.with_suffix(".partial.npz")
    np.savez(tmp, frame=result.frames["frame"].to_numpy(np.int64), pts_time=result.frames["pts_time"].to_numpy(),
             score=result.frames["score"].to_numpy(np.float64), duration=np.float64(duration or np.nan),
             fps=np.float64(fps or np.nan), video_score=np.float64(result.score))
    tmp.replace(cache)


def select(sampling, frame: np.ndarray, pts_time: np.ndarray, duration: float | None,
           fps: float | None = None) -> np.ndarray:
    """Positions of the frames ``sampling`` keeps, fed to the real selector in presentation order like a source
    (including its fallback to the last frame in range when nothing was kept)."""
    selector = sampling.selector(duration, fps)
    kept, last = [], None
    for pos, (index, t) in enumerate(zip(frame.tolist(), pts_time.tolist())):
        if selector.offer(index, t, False):
            kept.append(pos)
        elif not selector.done and t >= selector.start - 1e-6:
            last = pos
        if selector.done:
            break
    if not kept and selector.fallback_last and last is not None:
        kept.append(last)
    return np.array(kept, np.int64)


def _number(cached: dict, key: str) -> float | None:
    value = float(cached.get(key, np.nan))
    return None if math.isnan(value) else value


def sampled_score(sampling, cached: dict) -> tuple[float, int]:
    """(mean score of the frames ``sampling`` selects, how many)."""
    kept = select(sampling, cached["frame"], cached["pts_time"], _number(cached, "duration"), _number(cached, "fps"))
    return float(np.mean(cached["score"][kept])), len(kept)


def evaluate(caches: list[Path]) -> dict:
    """Per candidate: fraction of clips within TOLERANCE of the all-frames score, p95 and max |error|."""
    from contrique_video.decode.sampler import Sampling

    clips = {p.stem: dict(np.load(p, allow_pickle=False)) for p in caches}
    for name, data in clips.items():
        if "fps" not in data:  # caches written before the selector took the frame rate: read it from the clip
            from contrique_video.decode import open_source

            with open_source(caches[0].parent.parent / "clips" / f"{name}.mp4") as src:
                data["fps"] = np.float64(src.fps or np.nan)
    rows = []
    for mode, value in CANDIDATES:
        sampling = Sampling(mode, value)
        errors, counts = [], []
        for data in clips.values():
            s, n = sampled_score(sampling, data)
            errors.append(abs(s - float(np.mean(data["score"]))))
            counts.append(n)
        err = np.array(errors)
        rows.append({
            "sampling": f"--{mode} {value:g}", "mode": mode, "value": value,
            "within_1": float(np.mean(err <= TOLERANCE)), "p95": float(np.percentile(err, 95)),
            "max": float(err.max()), "mean_abs": float(err.mean()), "mean_frames": float(np.mean(counts)),
        })
    frame_scores = [d["score"] for d in clips.values()]
    meeting = [r for r in rows if r["mode"] == "frames" and r["within_1"] >= TARGET_FRACTION]
    return {
        "clips": len(clips),
        "frames_scored": int(sum(len(s) for s in frame_scores)),
        "video_score_range": [float(min(map(np.mean, frame_scores))), float(max(map(np.mean, frame_scores)))],
        "median_within_clip_std": float(np.median([np.std(s) for s in frame_scores])),
        "median_within_clip_range": float(np.median([np.ptp(s) for s in frame_scores])),
        "tolerance": TOLERANCE, "target_fraction": TARGET_FRACTION,
        "smallest_frames_meeting_target": int(meeting[0]["value"]) if meeting else None,
        "candidates": rows,
    }


def table(summary: dict) -> str:
    lines = ["| sampling | frames scored (mean) | clips within 1 point | p95 abs error | max abs error |",
             "|---|---|---|---|---|"]
    for r in summary["candidates"]:
        lines.append(f"| `{r['sampling']}` | {r['mean_frames']:.1f} | {100 * r['within_1']:.0f}% | "
                     f"{r['p95']:.2f} | {r['max']:.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "sampling", help="work folder (git-ignored)")
    parser.add_argument("--clips", type=int, default=30, help="number of clips (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="256x144", help="clip size WxH (default 256x144)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core machine 2 threads ran ~8x slower)")
    parser.add_argument("--stage", choices=("all", "generate", "score", "evaluate"), default="all")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    specs = clip_specs(args.clips, args.seed)
    clip_dir, cache_dir = args.out / "clips", args.out / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)

    if args.stage in ("all", "generate"):
        (args.out / "clips.json").write_text(json.dumps([asdict(s) for s in specs], indent=1))
        for spec in specs:
            path = clip_dir / f"{spec.name}.mp4"
            if not path.exists():
                make_clip(spec, path, width, height)
                print(f"made {path.name}: {spec.seconds:.1f} s, {spec.fps:g} fps{' VFR' if spec.vfr else ''}, "
                      f"{len(spec.shots)} shot(s)", flush=True)

    if args.stage in ("all", "score"):
        from contrique_video.api import Scorer

        scorer = None
        for spec in specs:
            cache = cache_dir / f"{spec.name}.npz"
            if cache.exists():
                continue
            scorer = scorer or Scorer(threads=args.threads)
            t0 = time.time()
            score_clip(scorer, clip_dir / f"{spec.name}.mp4", cache)
            n = len(np.load(cache)["score"])
            print(f"scored {spec.name}: {n} frames in {time.time() - t0:.0f} s "
                  f"({(time.time() - t0) / n:.2f} s/frame)", flush=True)

    if args.stage in ("all", "evaluate"):
        caches = [cache_dir / f"{s.name}.npz" for s in specs if (cache_dir / f"{s.name}.npz").exists()]
        if not caches:
            print("no scored clips yet", file=sys.stderr)
            return 1
        summary = evaluate(caches)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(f"{summary['clips']} clips, {summary['frames_scored']} frames scored; clip scores "
              f"{summary['video_score_range'][0]:.1f}-{summary['video_score_range'][1]:.1f}; median within-clip "
              f"frame-score range {summary['median_within_clip_range']:.1f}\n")
        print(table(summary))
        print(f"\nsmallest --frames N with >= {TARGET_FRACTION:.0%} of clips within {TOLERANCE:g} point: "
              f"{summary['smallest_frames_meeting_target']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

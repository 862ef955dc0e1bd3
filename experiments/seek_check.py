"""Does seeking to the sampled frames change scores, and what does it save? (issue #13)
Answered: seeking to the sampled frames gives identical frames and scores (difference 0.0000) and decodes about half as many frames on a 10-minute file.

Writes a 10-minute 1080p H.264 file (libx264 ultrafast, key frame every 250 frames, 25 fps, moving test
pattern) to a temporary folder, then decodes the default sampling (64 frames) twice -- seeking to the
sampled frames, and in one pass from the start (``seek=False``) -- and scores them with the built-in model
(the full decode's frames where their pixels differ from the seeking path's, or all with --score-both:
1080p frames take seconds each on a CPU). Prints decoded-frame counts, decode times, and the largest
per-frame and video score differences, which must stay within 0.1.

Usage: python experiments/seek_check.py [--minutes 10] [--keep DIR] [--score-both]

The file is made with the ffmpeg of imageio-ffmpeg (testsrc2 for ``--base`` seconds, then copied
end to end, so the long file costs seconds to make); without it, PyAV encodes the whole length.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contrique_video.api import Scorer  # noqa: E402
from contrique_video.decode import open_source  # noqa: E402
from contrique_video.decode.sampler import Sampling  # noqa: E402
from contrique_video.timing import time_call  # noqa: E402

FPS, KEYINT, SIZE = 25, 250, (1920, 1080)


def _ffmpeg() -> str | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return shutil.which("ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


def make_video(path: Path, seconds: int, base: int) -> None:
    """``seconds`` of 1080p H.264: ``base`` seconds of testsrc2 encoded once, then repeated by stream copy."""
    ffmpeg = _ffmpeg()
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-x264-params", f"keyint={KEYINT}", "-pix_fmt", "yuv420p"]
    if ffmpeg:
        part = path.with_name("base.mp4")
        src = f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate={FPS}"
        subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", src, "-t", str(base), *x264, str(part)],
                       check=True)
        loops = -(-seconds // base) - 1
        subprocess.run([ffmpeg, "-v", "error", "-y", "-stream_loop", str(loops), "-i", str(part), "-t", str(seconds),
                        "-c", "copy", str(path)], check=True)
        part.unlink()
        return
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "x264-params": f"keyint={KEYINT}"})
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        yy, xx = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
        for i in range(seconds * FPS):
            rgb = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, (xx + yy + i) % 256], -1).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))


def decode(path: Path, seek: bool) -> dict:
    """Decode the default sampling, timed once (from opening the file)."""

    def run() -> tuple[list, int, bool]:
        with open_source(path, seek=seek) as src:
            return list(src.frames(Sampling())), src.decoded_frames, src.seeked

    took = time_call(run, repeats=1, warmup=0)
    frames, decoded, seeked = took.result
    return dict(frames=frames, seeked=seeked, decoded=decoded, decode_s=took.best)


def score(scorer: Scorer, frames: list) -> np.ndarray:
    """Per-frame scores and the pooled video score (the mean feature through the head), as Scorer.score pools."""
    feats = np.concatenate([scorer.frame_features([f.rgb for f in frames[i : i + scorer.batch_size]])
                            for i in range(0, len(frames), scorer.batch_size)])
    head = scorer.check_head()
    return head.predict(feats), feats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--base", type=int, default=30, help="seconds of test pattern that are repeated")
    parser.add_argument("--keep", type=Path, help="write the video here and keep it")
    parser.add_argument("--score-both", action="store_true",
                        help="score every full-decode frame too, not only those whose pixels differ")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="seek_check_")) if args.keep is None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = folder / "long_1080p.mp4"
        t0 = time.perf_counter()
        make_video(path, int(args.minutes * 60), args.base)
        with open_source(path) as src:
            meta = src.metadata
        print(f"{path.name}: {meta.width}x{meta.height} {meta.codec}, {meta.duration:.0f} s, {meta.fps:g} fps, "
              f"{meta.frame_count} frames, {path.stat().st_size / 1e6:.0f} MB (made in {time.perf_counter() - t0:.0f} s)")
        scorer = Scorer(backend="torch")  # eager: "auto" may first compile the network for this frame size
        head = scorer.check_head()
        seek, full = decode(path, seek=True), decode(path, seek=False)
        same = [(f.index, f.pts_time) for f in seek["frames"]] == [(f.index, f.pts_time) for f in full["frames"]]
        took = time_call(lambda: score(scorer, seek["frames"]), repeats=1, warmup=0)
        (seek_scores, seek_feats), score_s = took.result, took.best
        # The full decode's frames are scored where their pixels differ from the seeking path's (all of them
        # with --score-both); identical pixels give identical scores.
        differ = [i for i, (a, b) in enumerate(zip(seek["frames"], full["frames"]))
                  if args.score_both or not np.array_equal(a.rgb, b.rgb)]
        full_scores, full_feats = seek_scores.copy(), seek_feats.copy()
        if differ:
            got_scores, got_feats = score(scorer, [full["frames"][i] for i in differ])
            full_scores[differ], full_feats[differ] = got_scores, got_feats
        frame_diff = float(np.abs(seek_scores - full_scores).max())
        videos = [float(head.predict(f.mean(axis=0))[0]) for f in (seek_feats, full_feats)]
        video_diff = abs(videos[0] - videos[1])
        print(f"{'path':<12} {'frames':>6} {'decoded':>8} {'decode s':>9} {'video score':>12}")
        for name, r, v in (("seeking", seek, videos[0]), ("full decode", full, videos[1])):
            print(f"{name:<12} {len(r['frames']):>6} {r['decoded']:>8} {r['decode_s']:>9.1f} {v:>12.3f}")
        print(f"scoring the {len(seek['frames'])} frames took {score_s:.0f} s; full-decode frames whose pixels differ "
              f"from the seeking path's: {len(differ) if not args.score_both else 'not checked (--score-both)'}")
        print(f"same frames (index, pts_time): {same}; seeked: {seek['seeked']}; "
              f"max per-frame score difference {frame_diff:.4f}; video score difference {video_diff:.4f}")
        ok = same and seek["seeked"] and frame_diff <= 0.1 and video_diff <= 0.1
        print("OK" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

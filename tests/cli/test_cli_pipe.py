"""A pipe scores what the file scores (#28): `ffmpeg -i clip -c:v rawvideo -f nut - | contrique-video score -`
against `contrique-video score clip`, with the built-in model, on a pan over a photo whose focus breathes (so
which frames are scored matters); and the records say what the pipe did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parents[2]
ffmpeg_exe = pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe


def pan_clip(path: Path, seconds: float, fps: int = 24, size: tuple[int, int] = (128, 96)) -> Path:
    """A pan across a photo (scikit-image's coffee) with the focus going soft and sharp three times, x264."""
    import skimage.data

    photo = skimage.data.coffee()
    w, h = size
    n = int(seconds * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for i in range(n):
            u = i / max(1, n - 1)
            x = int(round(u * (photo.shape[1] - 2 * w)))
            y = int(round((photo.shape[0] - 2 * h) * 0.5 * (1 - np.cos(np.pi * u))))
            img = photo[y:y + 2 * h:2, x:x + 2 * w:2].astype(np.float32)
            sigma = 1.5 * (0.5 - 0.5 * np.cos(2 * np.pi * 3 * u))
            if sigma > 0.05:
                img = gaussian_filter(img, (sigma, sigma, 0))
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def score(*args: str, stdin=None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run([sys.executable, "-m", "contrique_video", "-q", "score", *args, "--format", "json"],
                          stdin=stdin, capture_output=True, env=env, timeout=3000, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def piped(clip: Path, *ffmpeg_args: str, score_args: tuple[str, ...] = ()) -> dict:
    feed = subprocess.Popen([ffmpeg_exe(), "-v", "error", "-i", str(clip), *ffmpeg_args, "-"],
                            stdout=subprocess.PIPE)
    try:
        return score("-", *score_args, stdin=feed.stdout)
    finally:
        feed.stdout.close()
        feed.wait(timeout=60)


def check_pipe_matches_file(clip: Path) -> tuple[dict, dict]:
    file, pipe = score(str(clip)), piped(clip, "-c:v", "rawvideo", "-f", "nut")
    assert pipe["frames_scored"] == file["frames_scored"] == 64
    assert abs(pipe["score"] - file["score"]) < 0.5, (pipe["score"], file["score"])
    assert pipe["sampling"].startswith("64 frames uniformly over a stream of unknown length")
    return file, pipe


def test_a_4_second_pipe_scores_what_the_file_scores(tmp_path):
    file, pipe = check_pipe_matches_file(pan_clip(tmp_path / "pan4.mp4", 4))
    # 96 frames: every frame is held, so the pipe scores the file's frames
    assert pipe["score"] == pytest.approx(file["score"], abs=1e-3) and "the frames a file would give" in pipe["sampling"]


@pytest.mark.slow
def test_a_60_second_pipe_scores_what_the_file_scores(tmp_path):
    file, pipe = check_pipe_matches_file(pan_clip(tmp_path / "pan60.mp4", 60))
    assert "1 frame in every 16)" in pipe["sampling"]  # 1440 frames: candidates every 32nd, at most 128 held


def test_a_stream_copy_is_not_called_a_re_encode_and_ffmpegs_default_is(tmp_path):
    """An H.264 file made by the ffmpeg CLI carries its "Lavc libx264" encoder tag into a -c:v copy, the tag a
    default re-encode for Matroska has too: nothing in the stream tells them apart, so neither is called one."""
    clip = tmp_path / "enc.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(pan_clip(tmp_path / "pan.mp4", 1)), "-c:v", "libx264",
                    str(clip)], check=True, timeout=120)
    copy = piped(clip, "-c:v", "copy", "-f", "matroska", score_args=("--frames", "4"))
    assert copy["warnings"] == []
    default = piped(clip, "-f", "nut", score_args=("--frames", "4"))  # ffmpeg's own default: mpeg4
    assert len(default["warnings"]) == 1 and "lossy re-encode" in default["warnings"][0]


COUNT_ENCODED = """
import sys
import contrique_video.api as cv
from contrique_video.decode.sampler import Sampling

encoded = []
plain = cv.Scorer.frame_features
def counted(self, rgbs):
    encoded.extend(rgbs)
    return plain(self, rgbs)
cv.Scorer.frame_features = counted
result = cv.score("-", sampling=Sampling("frames", 8), backend="torch")
print(len(encoded), result.frames_scored)
"""


def test_a_pipe_encodes_only_the_frames_it_scores(tmp_path):
    """A 4 s stream of 96 frames held at a doubling stride for --frames 8: the frames it holds stay as the
    decoder gave them, and only the 8 chosen at the end reach the encoder, as a file's sampling does."""
    clip = pan_clip(tmp_path / "c.mp4", seconds=4)
    feed = subprocess.Popen([ffmpeg_exe(), "-v", "error", "-i", str(clip), "-c:v", "rawvideo", "-f", "nut", "-"],
                            stdout=subprocess.PIPE)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run([sys.executable, "-c", COUNT_ENCODED], stdin=feed.stdout, capture_output=True,
                              text=True, env=env, timeout=600, cwd=ROOT)
    finally:
        feed.stdout.close()
        feed.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["8", "8"]


def test_a_reader_that_closes_stdout_stops_the_command_quietly():
    """`contrique-video score ... | head -1`: once the reader has gone the command stops without an error line and
    exits 141 (128 + SIGPIPE, what a shell reports for a filter killed by it), not 1 with "Broken pipe"."""
    proc = subprocess.Popen([sys.executable, "-m", "contrique_video", "-q", "score", str(ROOT / "samples/sample.mp4"),
                             "--frames", "2", "--format", "csv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # before the first record is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""

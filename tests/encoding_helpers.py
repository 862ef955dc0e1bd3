"""Helpers for the encoding tests: a stand-in scorer (fast, deterministic, no model) and fake ffmpeg binaries.

The stand-in scores a file by its bitrate (more bits, higher score), so CRF-search and ladder logic can be
checked exactly without the cost of the network; the real model is exercised by the CLI tests.
"""

from __future__ import annotations

import math
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from contrique_video.encoding.probe import describe


@dataclass
class StubHead:
    name: str = "stub"
    scale: str = "MOS"
    range: tuple = (0.0, 100.0)
    higher_is_better: bool = True


@dataclass
class StubResult:
    score: float
    pooled: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {"score": self.score, "pooled": self.pooled}


class StubScorer:
    """Score = 10 * ln(kbps) of the file scored, and the sizes of the files it was asked to score."""

    def __init__(self):
        self.sizes: list[tuple[int, int]] = []

    def check_head(self) -> StubHead:
        return StubHead()

    def score(self, path, sampling=None, on_frames=None) -> StubResult:
        info = describe(path)
        self.sizes.append((info.width, info.height))
        s = 10 * math.log(info.kbps)
        return StubResult(s, {"p5": s})


def photo_pan(path: Path, size: tuple[int, int] = (160, 90), frames: int = 48, fps: int = 24) -> Path:
    """A slow pan over a photo (skimage's coffee), lossless FFV1: natural content the built-in head scores
    in its range, unlike synthetic patterns."""
    import av
    import numpy as np
    from skimage import data
    from skimage.transform import resize

    w, h = size
    photo = data.coffee()
    scale = (h + 8) / photo.shape[0]
    big = (resize(photo, (h + 8, int(photo.shape[1] * scale) + 1), anti_aliasing=True) * 255).astype(np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            x = round(i * (big.shape[1] - w) / max(1, frames - 1))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(big[4:4 + h, x:x + w]), format="rgb24")
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def real_ffmpeg() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="needs an ffmpeg binary: pip install imageio-ffmpeg")
    return imageio_ffmpeg.get_ffmpeg_exe()


def fake_ffmpeg(folder: Path, fail_from_call: int, code: int = 7) -> Path:
    """An ffmpeg that runs the real one for its first encodes (calls with ``-crf``; questions and lossless
    intermediates always run), then fails with ``code`` from encode ``fail_from_call``."""
    path = folder / "ffmpeg-flaky"
    path.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" -crf "*) ;; *) exec "{real_ffmpeg()}" "$@";; esac\n'
        f'n=$(cat "{folder}/calls" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "{folder}/calls"\n'
        f'if [ "$n" -ge {fail_from_call} ]; then echo "simulated encoder crash" >&2; exit {code}; fi\n'
        f'exec "{real_ffmpeg()}" "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def leftovers(folder: Path) -> list[str]:
    """Names left in a --workdir (temporary folders must be gone)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


__all__ = ["StubScorer", "fake_ffmpeg", "leftovers", "photo_pan", "real_ffmpeg"]

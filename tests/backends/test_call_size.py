"""Memory is bounded by the pixels in one encoder call (issue #29): on the CPU a 1080p input goes one frame
per call and one frame decoded ahead, smaller inputs several at a time, a GPU keeps --batch-size."""

from __future__ import annotations

import pytest
from checkpoints import random_official_checkpoint
from media import make_clip

from contrique_video.api import Sampling, Scorer


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    d = tmp_path_factory.mktemp("calls")
    random_official_checkpoint(d / "r18.pt", arch="resnet18")
    return Scorer(weights=d / "r18.pt", batch_size=4)


@pytest.mark.parametrize("size,frames,calls", [((1920, 1080), 3, [1, 1, 1]), ((640, 360), 6, [4, 2]),
                                               ((1280, 720), 3, [2, 1])])
def test_frames_per_encoder_call_on_the_cpu(scorer, tmp_path, monkeypatch, size, frames, calls):
    clip = make_clip(tmp_path / "clip.mp4", size=size, frames=frames, fps=24)
    seen = []
    backend = scorer.backend
    monkeypatch.setattr(scorer, "backend", lambda batch: seen.append(len(batch)) or backend(batch))
    feats = scorer.features(clip, Sampling("all"))
    assert seen == calls and len(feats.features) == frames


def test_gpu_keeps_the_batch_size(scorer, monkeypatch):
    monkeypatch.setattr(scorer, "device", "cuda")
    assert scorer.frames_per_call(1920, 1080) == 4
    monkeypatch.setattr(scorer, "device", "cpu")
    assert scorer.frames_per_call(1920, 1080) == 1 and scorer.frames_per_call(3840, 2160) == 1

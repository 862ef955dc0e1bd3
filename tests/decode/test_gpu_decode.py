"""GPU decoding (--device cuda): the device argument, the CPU fallback with its warning, and the same frames.

Without a CUDA device (this project's CI) the fallback tests run; with one, the NVDEC test runs instead.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from media import make_clip

from contrique_video.decode import gpu as gpu_decode
from contrique_video.decode.sampler import Sampling
from contrique_video.decode import open_source
from contrique_video.errors import InputError

NO_CUDA_DECODE = gpu_decode.cuda_decode_problem(None)


@pytest.fixture(autouse=True)
def _fresh_warnings():
    gpu_decode._warned.clear()
    yield
    gpu_decode._warned.clear()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("gpu") / "clip.mp4", size=(128, 96), frames=10)


def frames(path, device: str, **kw) -> list:
    with open_source(path, device=device, **kw) as src:
        return [(f.index, f.pts_time, f.rgb) for f in src.frames(Sampling("all"))]


@pytest.mark.parametrize("device, expected", [("cpu", ("cpu", None)), ("cuda", ("cuda", None)),
                                              ("CUDA:1", ("cuda", 1)), (None, ("cpu", None))])
def test_parse_device(device, expected):
    assert gpu_decode.parse_device(device) == expected


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0", "mps"])
def test_unknown_device_names_the_choices(device, clip):
    with pytest.raises(InputError, match="available: cpu, cuda, cuda:N"):
        open_source(clip, device=device)


def test_cpu_needs_no_hwaccel():
    assert gpu_decode.hwaccel_for("cpu") is None


@pytest.mark.skipif(NO_CUDA_DECODE is None, reason="a CUDA decoder is present; the NVDEC test covers this machine")
def test_cuda_falls_back_to_cpu_with_a_warning_and_the_same_frames(clip, caplog):
    with caplog.at_level(logging.WARNING, logger="contrique_video"):
        on_cuda = frames(clip, "cuda")
        frames(clip, "cuda")  # warned once per process, not per file
    warnings = [r.getMessage() for r in caplog.records if "--device cuda" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].endswith("decoding on the CPU"), warnings
    on_cpu = frames(clip, "cpu")
    assert [(i, t) for i, t, _ in on_cuda] == [(i, t) for i, t, _ in on_cpu]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(on_cuda, on_cpu))


def test_decord_with_cuda_says_it_decodes_on_the_cpu(clip, caplog):
    pytest.importorskip("decord")
    with caplog.at_level(logging.WARNING, logger="contrique_video"):
        with open_source(clip, decoder="decord", device="cuda"):
            pass
    assert any("decord decoder decodes on the CPU" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(NO_CUDA_DECODE is not None, reason=f"no CUDA decoding here: {NO_CUDA_DECODE}")
def test_nvdec_frames_match_cpu_decoding(clip, caplog):
    with caplog.at_level(logging.WARNING, logger="contrique_video"):
        on_cuda = frames(clip, "cuda")
    assert not [r for r in caplog.records if "--device cuda" in r.getMessage()]
    on_cpu = frames(clip, "cpu")
    assert [(i, t) for i, t, _ in on_cuda] == [(i, t) for i, t, _ in on_cpu]
    for (_, _, a), (_, _, b) in zip(on_cuda, on_cpu):
        # NVDEC output is bit-exact H.264; NV12 and yuv420p take different swscale paths to RGB.
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0

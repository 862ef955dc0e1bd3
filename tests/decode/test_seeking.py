"""Seeking to the sampled frames (contrique_video.decode.seeking) gives exactly what a decode from the
start gives, decodes only around the targets, and falls back to one pass wherever it cannot be exact."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from media import expected_times, make_clip

from contrique_video.decode import open_source, seeking
from contrique_video.decode.indices import FrameIndices
from contrique_video.decode.sampler import Sampling
from contrique_video.errors import InputError

SAMPLINGS = [
    Sampling(),
    Sampling("frames", 7),
    Sampling("fps", 3),
    Sampling("fps", 2, start=0.7, duration=1.5),
    Sampling("every", 5),
    Sampling("every", 3, start=1.0),
    Sampling("all"),
    Sampling("all", start=2.0, duration=0.5),
    Sampling("keyframes"),
    FrameIndices((0, 1, 17, 18, 40, 71)),
]

CLIPS = {
    "mp4_bframes_gop12": dict(frames=72, gop=12, bframes=3),
    "mp4_long_gop_bframes": dict(frames=72, gop=250, bframes=2),
    "mp4_no_bframes_gop5": dict(frames=72, gop=5, bframes=0),
    "mkv_bframes_gop12": dict(frames=72, gop=12, bframes=3),
    "mkv_long_gop": dict(frames=72, gop=250, bframes=2),
    "mp4_vfr_gop8": dict(frames=72, gop=8, bframes=2, vfr=True),
    "mkv_vfr_gop8": dict(frames=72, gop=8, bframes=2, vfr=True),
    "mp4_scenecut_keys": dict(frames=72, bframes=3),  # x264's own key-frame placement
    "mp4_rotated": dict(frames=72, gop=6, bframes=2, rotation=90),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seek")
    out = {}
    for name, kwargs in CLIPS.items():
        ext = name.split("_")[0]
        out[name] = make_clip(folder / f"{name}.{ext}", size=(64, 48), **kwargs)
    return out


def table(frames) -> list[tuple[int, float, bytes]]:
    return [(f.index, f.pts_time, f.rgb.tobytes()) for f in frames]


def full_decode(path, sampling) -> list:
    with open_source(path, seek=False) as src:
        frames = table(src.frames(sampling))
        assert not src.seeked
    return frames


@pytest.mark.parametrize("name", list(CLIPS))
def test_seeking_gives_the_frames_of_a_full_decode(clips, name):
    path = clips[name]
    with open_source(path) as src:
        for sampling in SAMPLINGS:
            got = table(src.frames(sampling))
            assert got == full_decode(path, sampling), (name, sampling)
            assert src.seeked == (not isinstance(sampling, Sampling) or sampling.mode != "keyframes")
            assert src.warnings == []


def test_vfr_times_and_indices_after_seeking(clips):
    with open_source(clips["mp4_vfr_gop8"]) as src:
        frames = list(src.frames(Sampling("frames", 9)))
        assert src.seeked
    times = expected_times(72, vfr=True)
    assert [f.pts_time for f in frames] == pytest.approx([times[f.index] for f in frames], abs=1e-9)


def test_default_sampling_of_a_long_clip_decodes_around_its_targets(tmp_path):
    """60 s at 24 fps with a key frame every 12: the default 64 frames need a few hundred frames decoded."""
    path = make_clip(tmp_path / "long.mp4", size=(32, 32), frames=1440, gop=12, bframes=2, content="flat")
    with open_source(path) as src:
        frames = list(src.frames())
        assert src.seeked and len(frames) == 64
        timeline = src.timeline()
        # at most the frames from each target's key frame to the target, plus B-frame reordering delay
        bound = sum(f.index - timeline.key_before(f.index) + 1 + 3 for f in frames)
        assert src.decoded_frames <= bound < 1440 // 2
        seeked = table(frames)
    assert seeked == full_decode(path, Sampling())


def test_consecutive_targets_in_one_gop_share_the_decode(clips, monkeypatch):
    calls = []
    real = seeking._seek
    monkeypatch.setattr(seeking, "_seek", lambda c, s, pts: (calls.append(pts), real(c, s, pts)))
    with open_source(clips["mp4_bframes_gop12"]) as src:
        frames = list(src.frames(FrameIndices((13, 15, 20, 50))))
    assert [f.index for f in frames] == [13, 15, 20, 50]
    assert len(calls) == 2  # one seek for GOP 12..23, one for 48..59
    assert src.decoded_frames <= (20 - 12 + 1) + (50 - 48 + 1) + 2 * 3


def test_a_seek_that_lands_after_its_target_falls_back_to_a_full_decode(clips, monkeypatch):
    path = clips["mp4_bframes_gop12"]
    want = full_decode(path, Sampling("frames", 6))
    real = seeking._seek
    calls = []

    def late(container, stream, pts):  # the third seek goes a second (two key frames) too far
        calls.append(pts)
        real(container, stream, pts + (round(1 / stream.time_base) if len(calls) == 3 else 0))

    monkeypatch.setattr(seeking, "_seek", late)
    with open_source(path) as src:
        got = table(src.frames(Sampling("frames", 6)))
        assert not src.seeked and len(calls) == 3
        assert got == want
        assert table(src.frames(Sampling("frames", 6))) == want  # and it does not try again
        assert len(calls) == 3


def test_a_frame_table_that_disagrees_with_the_decoder_falls_back(clips, monkeypatch):
    """A packet that decodes to no frame (damage) would shift every later index: the mismatch is caught."""
    path = clips["mkv_bframes_gop12"]
    real = seeking.scan

    def missing_one(container, stream, start):
        t = real(container, stream, start)
        # frame 5 lies between the key frame 0 and the first target, 7
        return seeking.Timeline(t.pts[:5] + t.pts[6:], [k if k < 5 else k - 1 for k in t.keys], t.time_base, True)

    monkeypatch.setattr("contrique_video.decode.pyav.scan", missing_one)
    with open_source(path) as src:
        got = table(src.frames(Sampling("frames", 5)))
        assert not src.seeked
    assert got == full_decode(path, Sampling("frames", 5))


@pytest.mark.parametrize("ext", ["ts", "nut"])
def test_containers_without_exact_seeking_are_decoded_in_one_pass(tmp_path, ext):
    path = make_clip(tmp_path / f"c.{ext}", frames=48, gop=12, bframes=2)
    with open_source(path) as src:
        assert src.timeline() is None
        frames = [f.index for f in src.frames(Sampling("frames", 4))]
        assert not src.seeked and frames == [6, 18, 30, 42]


def test_a_named_pipe_is_decoded_in_one_pass(tmp_path):
    path = make_clip(tmp_path / "p.mkv", frames=24, gop=6, bframes=2)
    want = full_decode(path, Sampling("frames", 3))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(path.read_bytes()))
    writer.start()
    try:
        with open_source(fifo) as src:
            assert src.timeline() is None
            assert table(src.frames(Sampling("frames", 3))) == want and not src.seeked
    finally:
        writer.join(timeout=30)


def test_get_frames_at_and_played_at(clips):
    path = clips["mp4_vfr_gop8"]
    with open_source(path, seek=False) as src:
        every = list(src.frames(Sampling("all")))
    times = [f.pts_time for f in every]
    for seek in (True, False):
        with open_source(path, seek=seek) as src:
            got = src.get_frames_at([40, 3, 40, 0])
            assert [f.index for f in got] == [40, 3, 40, 0]
            assert got[0].rgb.tobytes() == every[40].rgb.tobytes() and got[3].pts_time == 0.0
            # on screen at t: the last frame starting at or before t
            ats = [0.0, times[5], times[5] + 0.001, times[30] - 0.001, times[-1] + 5.0]
            played = src.get_frames_played_at(ats)
            assert [f.index for f in played] == [0, 5, 5, 29, 71]
            assert np.array_equal(played[2].rgb, every[5].rgb)
            assert src.seeked == seek
            with pytest.raises(InputError, match="no frame"):
                src.get_frames_at([72])


def test_metadata(clips):
    with open_source(clips["mp4_rotated"]) as src:
        meta = src.metadata
    assert (meta.width, meta.height, meta.coded_width, meta.coded_height) == (48, 64, 64, 48)
    assert meta.rotation in (90, -90) and meta.transform[0]
    assert meta.codec == "h264" and meta.bit_depth == 8 and meta.pixel_format == "yuv420p"
    assert meta.fps == pytest.approx(24) and meta.frame_count == 72 and meta.matrix is None
    assert meta.duration == pytest.approx(72 / 24, abs=0.05) and meta.hdr is None

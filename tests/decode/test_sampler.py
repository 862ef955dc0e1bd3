"""Frame selection rules (contrique_video.decode.sampler), on synthetic timestamps and on real clips."""

from __future__ import annotations

import logging
import math

import pytest
from media import expected_times, make_clip

from contrique_video.decode.sampler import Sampling, StreamSelector
from contrique_video.decode import open_source
from contrique_video.errors import InputError


def run(sampling: Sampling, times, total=None, keys=None, fps=None):
    """Feed (index, time, key) to a fresh selector like a decoder would; return kept indices
    and how many frames were offered before the selector said it was done."""
    sel = sampling.selector(total, fps)
    kept, offered = [], 0
    for i, t in enumerate(times):
        offered += 1
        if sel.offer(i, t, bool(keys and i in keys)):
            kept.append(i)
        if sel.done:
            break
    return kept, offered


def cfr(n, fps=24.0):
    return [i / fps for i in range(n)]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(mode="bogus"), "unknown sampling mode"),
        (dict(mode="fps", value=0), "fps"),
        (dict(mode="fps", value=-2.5), "fps"),
        (dict(mode="fps", value=None), "fps"),
        (dict(mode="fps", value=math.inf), "fps"),
        (dict(mode="frames", value=0), "whole number"),
        (dict(mode="frames", value=2.5), "whole number"),
        (dict(mode="frames", value=None), "whole number"),
        (dict(mode="every", value=0), "whole number"),
        (dict(mode="every", value=1.5), "whole number"),
        (dict(mode="all", start=-1), "start"),
        (dict(mode="all", start=math.nan), "start"),
        (dict(mode="all", duration=0), "duration"),
        (dict(mode="all", duration=-3), "duration"),
        (dict(mode="frames", value=True), "whole number"),
    ],
)
def test_invalid_values_raise_input_error(kwargs, words):
    with pytest.raises(InputError) as info:
        Sampling(**kwargs)
    message = str(info.value)
    assert words in message
    assert "\n" not in message


def test_valid_values_and_defaults():
    s = Sampling()
    assert (s.mode, s.value, s.start, s.duration) == ("frames", 64, 0.0, None)
    Sampling("fps", 0.5)
    Sampling("frames", 1)
    Sampling("frames", 7.0)  # a whole float is fine
    Sampling("every", 3, start=1.5, duration=2)
    Sampling("keyframes", None)
    Sampling("all", None)


@pytest.mark.parametrize(
    "sampling, text",
    [
        (Sampling(), "64 frames uniformly"),
        (Sampling("frames", 1), "1 frame uniformly"),
        (Sampling("fps", 1), "1 fps"),
        (Sampling("fps", 2.5), "2.5 fps"),
        (Sampling("all"), "all frames"),
        (Sampling("every", 1), "every frame"),
        (Sampling("every", 5), "1 frame in every 5"),
        (Sampling("keyframes"), "key frames"),
        (Sampling("fps", 1, start=2, duration=3), "1 fps from 2 s to 5 s"),
        (Sampling("all", start=1.5), "all frames from 1.5 s to end"),
    ],
)
def test_describe(sampling, text):
    assert sampling.describe() == text


def test_sampling_is_frozen_and_hashable():
    s = Sampling("fps", 2)
    with pytest.raises(Exception):
        s.value = 3  # type: ignore[misc]
    assert s == Sampling("fps", 2) and hash(s) == hash(Sampling("fps", 2))


# --------------------------------------------------------------------------- rules


def test_frames_centred_targets():
    times = cfr(48)  # 2 s at 24 fps
    kept, _ = run(Sampling("frames", 4), times, total=2.0, fps=24.0)
    # targets at the centres of four 0.5 s parts: 0.25, 0.75, 1.25, 1.75 s
    assert kept == [6, 18, 30, 42]


def test_default_sampling_does_not_take_the_first_frame():
    """Frame 0 is a key frame that scores high after lossy coding; the default must not favour it."""
    kept, _ = run(Sampling(), cfr(240), total=10.0, fps=24.0)
    assert len(kept) == 64 and 0 not in kept
    assert kept[0] == 1 and kept[-1] == 238  # targets 5/64 s and 10 - 5/64 s


def test_frames_take_the_frame_on_screen_at_each_target():
    times = cfr(48)
    # targets 0.2, 0.6, 1.0, 1.4, 1.8 s = frame positions 4.8, 14.4, 24, 33.6, 43.2
    assert run(Sampling("frames", 5), times, total=2.0, fps=24.0)[0] == [4, 14, 24, 33, 43]
    # with no known frame rate: the first frame at or after each target
    assert run(Sampling("frames", 5), times, total=2.0)[0] == [5, 15, 24, 34, 44]


def test_frames_stops_once_all_targets_are_taken():
    times = cfr(240)
    kept, offered = run(Sampling("frames", 2), times, total=10.0, fps=24.0)
    assert kept == [60, 180]  # targets 2.5 s and 7.5 s
    assert offered == 181  # done right after the last target


def test_frames_more_than_available_keeps_each_frame_once():
    times = cfr(12)
    kept, _ = run(Sampling("frames", 32), times, total=0.5, fps=24.0)
    assert kept == list(range(12))  # more targets than frames: every frame once, the last one too


def test_frames_with_start_and_duration():
    times = cfr(240)
    kept, offered = run(Sampling("frames", 4, start=2.0, duration=4.0), times, total=10.0, fps=24.0)
    # targets 2.5, 3.5, 4.5, 5.5 s
    assert kept == [60, 84, 108, 132]
    assert offered == 133


def test_frames_duration_is_clamped_to_the_video():
    times = cfr(48)
    kept, _ = run(Sampling("frames", 2, start=1.0, duration=100.0), times, total=2.0, fps=24.0)
    assert kept == [30, 42]  # targets 1.25 and 1.75 s


def stream(n, times, fps=None):
    """frames N over ``times`` as a pipe gives them (no duration): the chosen indices, the most candidates ever
    held, and the selector."""
    sel = Sampling("frames", n).selector(None, fps)
    assert isinstance(sel, StreamSelector) and Sampling("frames", n).on_stream(None)
    most = 0
    for i, t in enumerate(times):
        sel.offer(i, t)
        most = max(most, len(sel.candidates))
    return sel.choose(), most, sel


@pytest.mark.parametrize("frames, fps", [(64, 24.0), (50, 30.0), (33, 25.0), (10, 24.0)])
def test_a_short_stream_gives_the_frames_a_file_gives(frames, fps, caplog):
    """Up to 2N frames every frame is held, so a pipe scores the frames the file of the same length scores."""
    times = cfr(frames, fps)
    with caplog.at_level(logging.INFO, logger="contrique_video"):
        chosen, most, sel = stream(32, times, fps)
    file, _ = run(Sampling("frames", 32), times, total=frames / fps, fps=fps)
    assert chosen == file and most <= 64
    assert sel.description.startswith(f"{len(file)} frames uniformly over a stream of unknown length ({frames} frames")
    # an info line, not a warning: a pipe always has no duration, and -q must silence it
    assert [r.levelno for r in caplog.records if "unknown" in r.getMessage()] == [logging.INFO]


@pytest.mark.parametrize("frames", [100, 1800, 18000])
def test_a_long_stream_holds_at_most_2n_and_ends_near_the_file_choice(frames):
    fps = 30.0
    times = cfr(frames, fps)
    chosen, most, sel = stream(64, times, fps)
    file, _ = run(Sampling("frames", 64), times, total=frames / fps, fps=fps)
    assert len(chosen) == len(file) == 64 and most <= 2 * 64 + 1
    assert chosen == sorted(set(chosen))
    # each chosen frame is the held one nearest the file's: within half a stride of it
    assert max(abs(a - b) for a, b in zip(chosen, file)) <= sel.stride / 2
    assert sel.stride == 1 or f"1 frame in every {sel.stride})" in sel.description


def test_a_stream_without_a_rate_uses_its_timestamps():
    times = cfr(500, 24.0)
    chosen, _, sel = stream(16, times, fps=None)
    file, _ = run(Sampling("frames", 16), times, total=500 / 24.0, fps=None)
    assert len(chosen) == 16 and max(abs(a - b) for a, b in zip(chosen, file)) <= sel.stride / 2


def test_frames_with_explicit_duration_needs_no_total(caplog):
    times = cfr(72)
    with caplog.at_level(logging.WARNING, logger="contrique_video"):
        kept, _ = run(Sampling("frames", 2, duration=2.0), times, total=None, fps=24.0)
    assert kept == [12, 36]
    assert not caplog.records


def test_fps_grid():
    times = cfr(48)
    assert run(Sampling("fps", 6), times)[0] == list(range(0, 48, 4))
    assert run(Sampling("fps", 1), times)[0] == [0, 24]
    assert run(Sampling("fps", 24), times)[0] == list(range(48))
    assert run(Sampling("fps", 100), times)[0] == list(range(48))  # each frame at most once


def test_fps_with_start_and_duration():
    times = cfr(48)
    kept, offered = run(Sampling("fps", 4, start=0.5, duration=1.0), times)
    # grid 0.5, 0.75, 1.0, 1.25 (1.5 is the end, excluded)
    assert kept == [12, 18, 24, 30]
    assert offered == 37  # frame 36 (t=1.5) ends the range


def test_fps_on_variable_frame_rate():
    times = [0.0, 0.04, 0.06, 0.13, 0.16, 0.21, 0.22, 0.26, 0.36, 0.41]
    # grid every 0.1 s: 0 -> 0.0, 0.1 -> 0.13, 0.2 -> 0.21, 0.3 -> 0.36, 0.4 -> 0.41
    assert run(Sampling("fps", 10), times)[0] == [0, 3, 5, 8, 9]


def test_every_counts_from_the_first_frame_in_range():
    times = cfr(48)
    assert run(Sampling("every", 5), times)[0] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    kept, _ = run(Sampling("every", 5, start=0.5), times)
    assert kept == [12, 17, 22, 27, 32, 37, 42, 47]
    assert run(Sampling("every", 1), times)[0] == list(range(48))


def test_all_with_range():
    times = cfr(48)
    assert run(Sampling("all"), times)[0] == list(range(48))
    kept, offered = run(Sampling("all", start=1.0, duration=0.25), times)
    assert kept == [24, 25, 26, 27, 28, 29]
    assert offered == 31


def test_keyframes():
    times = cfr(48)
    keys = {0, 12, 24, 36}
    assert run(Sampling("keyframes"), times, keys=keys)[0] == [0, 12, 24, 36]
    assert run(Sampling("keyframes", start=0.6, duration=1.0), times, keys=keys)[0] == [24, 36]
    assert run(Sampling("keyframes", start=0.6, duration=0.8), times, keys=keys)[0] == [24]
    assert Sampling("keyframes").selector(2.0).keyframes_only
    assert not Sampling("all").selector(2.0).keyframes_only


def test_start_after_the_end_is_an_input_error():
    with pytest.raises(InputError, match="after the end"):
        Sampling("all", start=5.0).selector(2.0)


def test_done_is_sticky():
    sel = Sampling("all", duration=0.1).selector(None)
    assert sel.offer(0, 0.0)
    assert not sel.offer(1, 0.2) and sel.done
    assert not sel.offer(2, 0.05)  # nothing is kept once done


def test_selectors_are_deterministic():
    times = [i * 0.0417 + (0.003 if i % 3 == 0 else 0) for i in range(500)]
    for sampling in (Sampling(), Sampling("fps", 3), Sampling("every", 7), Sampling("frames", 50, start=3)):
        assert run(sampling, times, total=21.0) == run(sampling, times, total=21.0)


# --------------------------------------------------------------------------- on real clips


@pytest.fixture(scope="module")
def clip48(tmp_path_factory):
    # 2 s at 24 fps, key frame every 12 frames, with B-frames (decode order != display order)
    return make_clip(tmp_path_factory.mktemp("sampler") / "c48.mp4", frames=48, gop=12, bframes=2)


@pytest.mark.parametrize(
    "sampling, expected",
    [
        (Sampling("all"), list(range(48))),
        (Sampling("all", start=0.5, duration=0.5), list(range(12, 24))),
        (Sampling("frames", 4), [6, 18, 30, 42]),
        (Sampling("frames", 2, start=1.0), [30, 42]),
        (Sampling("fps", 2), [0, 12, 24, 36]),
        (Sampling("fps", 4, start=0.5, duration=1.0), [12, 18, 24, 30]),
        (Sampling("every", 10), [0, 10, 20, 30, 40]),
        (Sampling("every", 10, start=1.0), [24, 34, 44]),
        (Sampling("keyframes"), [0, 12, 24, 36]),
        (Sampling("keyframes", start=0.6, duration=0.8), [24]),
    ],
)
def test_modes_on_a_clip(clip48, sampling, expected):
    times = expected_times(48, 24)
    with open_source(clip48) as src:
        frames = list(src.frames(sampling))
    assert [f.index for f in frames] == expected
    assert [f.pts_time for f in frames] == pytest.approx([times[i] for i in expected], abs=1e-9)
    # the source applies exactly the rule the pure selector does
    keys = {0, 12, 24, 36}
    assert run(sampling, times, total=2.0, keys=keys, fps=24.0)[0] == expected


def test_same_frames_every_run(clip48):
    def once():
        with open_source(clip48) as src:
            return [(f.index, f.pts_time, f.rgb.tobytes()) for f in src.frames(Sampling("frames", 5))]

    assert once() == once()


def test_vfr_clip_with_fps_sampling(tmp_path):
    path = make_clip(tmp_path / "vfr.mkv", frames=10, vfr=True)
    times = expected_times(10, vfr=True)
    with open_source(path) as src:
        frames = list(src.frames(Sampling("fps", 10)))
    assert [f.index for f in frames] == run(Sampling("fps", 10), times)[0]
    assert [f.pts_time for f in frames] == pytest.approx([times[f.index] for f in frames], abs=1e-9)


def test_expected_count_matches_selection_on_a_regular_clip():
    """The progress bar's total is what the selector then keeps (24 fps, 10 s, so 240 frames)."""
    times = [i / 24 for i in range(240)]
    for sampling in (Sampling(), Sampling("fps", 2), Sampling("every", 5), Sampling("all", None, 2.0, 3.0)):
        sel = sampling.selector(10.0, 24.0)
        kept = sum(sel.offer(i, t, False) for i, t in enumerate(times))
        assert sampling.expected_count(10.0, 24.0) == kept
    assert Sampling().expected_count(None, 24.0) is None
    assert Sampling("keyframes", None).expected_count(10.0, 24.0) is None


def test_one_frame_video_is_scored_with_the_default_sampling():
    sel = Sampling().selector(1 / 24, 24.0)
    assert sel.offer(0, 0.0, True)
    # with no known rate no target reaches frame 0, so the source falls back to the last frame
    sel = Sampling().selector(1 / 24)
    assert not sel.offer(0, 0.0, True) and sel.fallback_last
    assert not Sampling("fps", 1, start=0.5).selector(1.0).fallback_last


def test_one_frame_clip_is_scored(tmp_path):
    for ext in ("mkv", "mp4", "ts"):
        path = make_clip(tmp_path / f"one.{ext}", frames=1)
        with open_source(path) as src:
            assert [f.index for f in src.frames()] == [0]


def test_source_falls_back_to_the_last_frame_when_no_target_is_reached(tmp_path):
    """A container that claims more time than its frames fill (a file cut short) and no known rate:
    no frame reaches the one target, and the last frame is scored instead of none."""
    path = make_clip(tmp_path / "c.mkv", frames=4)
    with open_source(path) as src:
        src.fps = None  # no rate known: targets need a frame at or after them
        src.duration = 10.0  # the container claims 10 s, the frames fill 1/6 s
        frames = list(src.frames(Sampling("frames", 1)))
    assert [f.index for f in frames] == [3]

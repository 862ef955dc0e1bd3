"""The branch's grain ladders (issue 30): grain as ffmpeg's noise filter makes it, x264 encodes as the ffmpeg CLI
makes them, ladders of the right shape and order, and batches that stay a function of (seed, step)."""

from __future__ import annotations

import subprocess

import av
import imageio_ffmpeg
import numpy as np
import pytest
from skimage import data

from contrique_video.errors import InputError
from contrique_video.training import branch as branch_mod
from contrique_video.training import grain
from contrique_video.training import grain_ladders as gl
from tests.training.test_branch import branch_config


def crop(size: int = 64) -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[100 : 100 + size, 200 : 200 + size])


def yuv(rgb: np.ndarray) -> np.ndarray:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()


def ffmpeg(args: list[str], raw: bytes) -> bytes:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "64x64",
           "-r", "25", "-i", "-", *args]
    return subprocess.run(cmd, input=raw, capture_output=True, check=True).stdout


def test_grain_has_ffmpeg_noise_filters_spread_and_luma_only_keeps_chroma():
    flat = np.full((64, 64, 3), 128, np.uint8)
    clean = yuv(flat).astype(int)
    ours = gl.add_grain(flat, 12, False, np.random.default_rng(0)).to_ndarray().astype(int) - clean
    out = ffmpeg(["-vf", "noise=alls=12:allf=u", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"], clean.astype(np.uint8).tobytes())
    theirs = np.frombuffer(out, np.uint8).astype(int).reshape(clean.shape) - clean
    assert (ours.min(), ours.max()) == (theirs.min(), theirs.max()) == (-6, 5)
    assert abs(ours.std() - theirs.std()) < 0.1 * theirs.std()
    luma = gl.add_grain(flat, 12, True, np.random.default_rng(0)).to_ndarray().astype(int) - clean
    assert luma[:64].std() > 3 and not luma[64:].any()


FORMAT = {"x264": "h264", "x264grain": "h264", "x265": "hevc", "svtav1": "ivf"}


@pytest.mark.parametrize("encoder", sorted(FORMAT))
def test_encodes_match_the_ffmpeg_cli(tmp_path, encoder):
    frame = gl.add_grain(crop(), 12, False, np.random.default_rng(0))
    raw = frame.to_ndarray().tobytes()
    ours = gl.encode(frame, 32, encoder)
    fmt = FORMAT[encoder]  # the degradation check's tier-3 flags (grain.ENCODERS), as its ffmpeg CLI runs them
    (tmp_path / f"a.{fmt}").write_bytes(ffmpeg([*grain.ENCODERS[encoder], "-crf", "32", "-f", fmt, "-"], raw))
    with av.open(str(tmp_path / f"a.{fmt}")) as c:
        theirs = next(c.decode(video=0)).to_ndarray(format="rgb24")
    if encoder == "svtav1":  # the CLI's libsvtav1 (4.2 here) is not PyAV's (4.1): the same settings, not the same bits
        src = frame.to_ndarray(format="rgb24").astype(int)
        lost, lost_cli = np.abs(ours - src).mean(), np.abs(theirs - src).mean()
        assert abs(lost - lost_cli) < 0.15 * lost_cli and np.abs(ours.astype(int) - theirs).mean() < 0.5 * lost_cli
    else:
        np.testing.assert_array_equal(ours, theirs)


def test_soften_keeps_the_size_and_removes_detail():
    soft = gl.soften(crop(), 3.0)
    detail = lambda x: np.abs(np.diff(x.astype(int), axis=1)).mean()  # noqa: E731
    assert soft.shape == crop().shape and soft.dtype == np.uint8
    assert detail(soft) < 0.6 * detail(crop())


def test_grainy_encode_ladder_falls_from_the_grainy_source_and_is_deterministic():
    ladder = gl.grainy_encode_ladder(crop(), np.random.default_rng(3))
    assert len(ladder) == 6 and all(x.shape == (64, 64, 3) and x.dtype == np.uint8 for x in ladder)
    away = [np.abs(x.astype(int) - ladder[0]).mean() for x in ladder]
    assert away[0] == 0 and all(a < b for a, b in zip(away[1:], away[2:]))  # higher CRF: further from the source
    assert np.abs(ladder[0].astype(int) - crop()).mean() > 1  # the source is grainy
    again = gl.grainy_encode_ladder(crop(), np.random.default_rng(3))
    assert all(np.array_equal(a, b) for a, b in zip(ladder, again))


@pytest.mark.parametrize("encoder", ["x265", "svtav1", "x264grain"])
def test_other_encoders_ladders_fall_and_a_choice_is_drawn(encoder):
    ladder = gl.grainy_encode_ladder(crop(), np.random.default_rng(3), (encoder,))
    away = [np.abs(x.astype(int) - ladder[0]).mean() for x in ladder]
    assert len(ladder) == 6 and away[0] == 0 and away[1] < away[-1]
    x264 = gl.grainy_encode_ladder(crop(), np.random.default_rng(3))
    assert np.array_equal(ladder[0], x264[0]) and not np.array_equal(ladder[3], x264[3])  # same grain, other encoder
    # with a choice, different seeds draw different encoders; softness changes the source
    picks = {tuple(map(bytes, gl.grainy_encode_ladder(crop(), np.random.default_rng(s), ("x264", encoder))[2:3]))
             for s in range(6)}
    assert len(picks) > 1
    soft = gl.grainy_encode_ladder(crop(), np.random.default_rng(3), soft_share=1.0)
    assert not np.array_equal(soft[0], x264[0])


@pytest.mark.parametrize("seed", range(6))
def test_flat_noise_ladder_is_grey_or_flat_and_noise_grows(seed):
    ladder = gl.flat_noise_ladder(crop(), np.random.default_rng(seed))
    base = ladder[0]
    grey = np.array_equal(base[..., 0], base[..., 1]) and np.array_equal(base[..., 1], base[..., 2])
    detail = lambda x: np.abs(np.diff(x.astype(int), axis=0)).mean()  # noqa: E731
    assert grey or detail(base) < 0.5 * detail(crop())
    away = [np.abs(x.astype(int) - base).mean() for x in ladder]
    assert len(ladder) == 6 and away[0] == 0 and all(a < b for a, b in zip(away, away[1:]))


def test_flat_noise_ladder_can_draw_the_checks_ffmpeg_noise():
    from contrique_video.training import degradation

    ladder = gl.flat_noise_ladder(crop(), np.random.default_rng(1), ("ffmpeg_noise",))
    again = gl.flat_noise_ladder(crop(), np.random.default_rng(1), ("ffmpeg_noise",))
    spread = [np.std(x.astype(int) - ladder[0]) for x in ladder]
    assert len(ladder) == 6 and spread[0] == 0 and all(a < b for a, b in zip(spread, spread[1:]))
    assert all(np.array_equal(a, b) for a, b in zip(ladder, again))
    # level 1 is the check's noise=alls=4 (sigma 4 / sqrt 3 on each of Y, Cb, Cr), on the flat copy
    luma = (ladder[1].astype(float) - ladder[0]) @ gl.LUMA
    assert abs(luma.std() - degradation.FFMPEG_NOISE[0] / np.sqrt(3)) < 0.3
    # the default draw never names it
    assert "ffmpeg_noise" not in gl.NOISE_TYPES and gl.parse_names("white_noise,ffmpeg_noise", gl.FLAT_NOISE_TYPES)[1] == "ffmpeg_noise"


def test_grain_batches_are_unclassified_deterministic_and_train(folders, tmp_path, monkeypatch):
    pristine = sorted((folders / "pristine").iterdir())
    cfg = branch_config(folders, tmp_path, grain_share=1.0, sources=3)
    full, half, labels = branch_mod.LadderBatches(cfg, pristine, [])[5]
    assert full.shape == (18, 3, 64, 64) and half.shape == (18, 3, 32, 32) and (labels == -1).all()
    again = branch_mod.LadderBatches(cfg, pristine, [])[5]
    assert torch_equal(full, again[0]) and not torch_equal(full, branch_mod.LadderBatches(cfg, pristine, [])[6][0])
    data_ = branch_mod.LadderBatches(cfg, pristine, [])
    model = branch_mod.BranchTrainee(cfg, data_.num_classes)
    rank, classify, _ = branch_mod.losses(model, full, half, labels, cfg)
    assert classify.item() == 0 and rank.item() > 0
    (rank + classify).backward()
    assert model.branch.parameters().__next__().grad.abs().sum() > 0
    # the default (grain_share 0) never builds them
    monkeypatch.setattr(gl, "grain_ladder", lambda *a: pytest.fail("grain ladder built at grain_share 0"))
    default = branch_mod.LadderBatches(branch_config(folders, tmp_path), pristine, [])[5]
    assert (default[2] >= 0).all()


def test_grain_ladders_are_cut_from_authentic_images_at_their_share(folders, tmp_path, monkeypatch):
    pristine = sorted((folders / "pristine").iterdir())
    authentic = sorted((folders / "authentic").iterdir())
    cut: list[int] = []
    region = branch_mod._region
    monkeypatch.setattr(branch_mod, "_region", lambda img, *a: cut.append(img.shape[0]) or region(img, *a))
    monkeypatch.setattr(gl, "grain_ladder", lambda crop, *a: [crop] * 6)  # the crop is what is checked
    for share in (0.0, 1.0):
        cut.clear()
        cfg = branch_config(folders, tmp_path, grain_share=1.0, grain_authentic_share=share, sources=4)
        branch_mod.LadderBatches(cfg, pristine, authentic)[3]
        assert cut == [160 if share == 0 else 150] * 4  # pristine images are 160 px, authentic ones 150
    with pytest.raises(InputError, match="grain-authentic-share"):
        branch_mod.train_branch(branch_config(folders, tmp_path, grain_authentic_share=1.5), progress=False)
    # at share 0 nothing extra is drawn, so a run that never set it builds the batches it built before
    cfg = branch_config(folders, tmp_path, grain_share=1.0, sources=6)
    with_authentic = branch_mod.LadderBatches(cfg, pristine, authentic)[3]
    assert torch_equal(with_authentic[0], branch_mod.LadderBatches(cfg, pristine, [])[3][0])


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_grain_share_is_checked(folders, tmp_path):
    from contrique_video.errors import InputError

    with pytest.raises(InputError, match="grain-share"):
        branch_mod.train_branch(branch_config(folders, tmp_path, grain_share=1.5), progress=False)
    with pytest.raises(InputError, match="grain-soft-share"):
        branch_mod.train_branch(branch_config(folders, tmp_path, grain_soft_share=2.0), progress=False)
    with pytest.raises(InputError, match="grain-encoders: unknown vp9"):
        branch_mod.train_branch(branch_config(folders, tmp_path, grain_encoders="x264,vp9"), progress=False)
    with pytest.raises(InputError, match="flat-noise-types: unknown blur"):
        branch_mod.train_branch(branch_config(folders, tmp_path, flat_noise_types="white_noise,blur"), progress=False)

"""Degradation ladders and the degradation check: scores must fall as held-out pristine images get worse."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from contrique_video.errors import InputError
from contrique_video.models.head import LinearHead
from contrique_video.training import degradation as deg
from contrique_video.training import degradation_check as check


def small_source(side=96):
    return deg.load_pristine(deg.SKLEARN_CHINA, None, side)


def psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def test_authentic_sources_get_only_damage_that_harms_any_photo():
    every, authentic = deg.ladder_kinds(), deg.ladder_kinds(authentic=True)
    assert set(deg.CAN_IMPROVE) <= set(every)
    assert not set(authentic) & set(deg.CAN_IMPROVE)
    assert set(every) - set(authentic) == set(deg.CAN_IMPROVE)
    assert {"white_noise", "ffmpeg_noise", "jpeg", "gaussian_blur", "rescale"} <= set(authentic)


def test_heldout_sources_are_disjoint_from_fit_sources_and_load_without_wallpapers():
    assert not set(deg.HELDOUT) & set(deg.FIT)
    img = small_source(64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    with pytest.raises(InputError, match="wallpaper"):
        deg.load_pristine("Storm", None)


def test_package_photos_name_what_to_install_when_missing():
    assert deg.package_image("matplotlib/mpl-data/sample_data/grace_hopper.jpg").shape == (600, 512, 3)
    with pytest.raises(InputError, match="pip install no_such_package_zz"):
        deg.package_path("no_such_package_zz/a.jpg")
    with pytest.raises(InputError, match="is missing from the installed matplotlib"):
        deg.package_path("matplotlib/mpl-data/no_such_photo.jpg")


def test_ffmpeg_noise_is_seeded_and_grows_with_strength():
    img = small_source()
    a = deg.ffmpeg_noise(img, 8, np.random.default_rng(1))
    np.testing.assert_array_equal(a, deg.ffmpeg_noise(img, 8, np.random.default_rng(1)))
    errs = [np.abs(deg.ffmpeg_noise(img, n, np.random.default_rng(1)).astype(int) - img).mean() for n in deg.FFMPEG_NOISE]
    assert np.all(np.diff(errs) > 0)


@pytest.mark.parametrize("codec", deg.available_codecs())
def test_crf_ladder_loses_fidelity_in_order(codec):
    img = small_source(128)
    scores = [psnr(deg.crf_encode([img], codec, crf)[0], img) for crf in (18, 30, 42, 51)]
    assert np.all(np.diff(scores) < 0), scores
    clip = deg.pan_clip(img, frames=3, size=64, step=8)
    out = deg.crf_encode(clip, codec, 30)
    assert len(out) == 3 and out[0].shape == (64, 64, 3)


def test_ladders_and_pairs():
    img = small_source(64)
    lads = {lad.kind: lad for lad in deg.ladders(img, "x", ["white_noise", "ffmpeg_noise", "crf_libx264"])}
    assert lads["white_noise"].n == 6 and lads["crf_libx264"].labels == ("clean", *deg.CRF_LADDER)
    assert lads["white_noise"].make(0) is img
    np.testing.assert_array_equal(lads["white_noise"].make(3), lads["white_noise"].make(3))  # same draw every call
    assert deg.ladder_pairs(4) == [(0, 1), (1, 2), (2, 3), (0, 2), (0, 3)]
    with pytest.raises(InputError, match="unknown degradation type"):
        deg.ladders(img, "x", ["nope"])
    with pytest.raises(InputError, match="too small"):
        deg.pan_clip(img, frames=10, size=64, step=4)


def sharpness_head():
    """A stand-in scorer: 100 - 10 * log Laplacian variance, which noise lowers and blur raises."""
    head = LinearHead(weights=np.array([-10.0]), intercept=100.0, name="t", features="lapvar", trained_on="-",
                      scale="MOS", range=(0.0, 100.0), higher_is_better=True)

    def extract(rgb):
        return np.array([np.log(ndimage.laplace(rgb.astype(float).mean(axis=2)).var() + 1)])

    return check.HeadScorer(extract, head)


def test_check_counts_ordered_pairs_and_finds_the_worst_case():
    img = small_source(64)
    clip = deg.pan_clip(small_source(96), frames=3, size=64, step=8)
    result = check.run_check(sharpness_head(), {"china": img}, ["white_noise", "gaussian_blur"], {"china": clip})
    s = result.summary()
    assert s["per_kind"]["white_noise"] == 1.0  # noise adds Laplacian energy: this scorer falls with it
    assert s["per_kind"]["gaussian_blur"] == 0.0  # and rises with blur
    assert s["still_pairs"] == 10 and s["levels"] == 10 + len(deg.available_codecs()) * 7 + 5
    assert s["max_above_clean"] > 1 and s["levels_above_clean"] >= 5
    worst = result.worst(1)[0]
    assert worst["kind"] == "gaussian_blur" and worst["vs_clean"] == max(p["vs_clean"] for p in result.pairs())
    text = check.report(result)
    assert "gaussian_blur" in text and "ALL (stills)" in text and "CRF pairs falling" in text


def test_pairs_whose_damage_left_the_image_unchanged_are_left_out():
    """Colour changes on a grey photo give the same image: a tie there is not a miss. A tie between
    different images (a scorer blind to noise) still is."""
    colour = small_source(64)
    grey = np.repeat(colour.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    head = LinearHead(weights=np.array([1.0]), intercept=0.0, name="t", features="mean", trained_on="-",
                      scale="MOS", range=(0.0, 100.0), higher_is_better=True)
    blind = check.HeadScorer(lambda rgb: np.array([float(rgb.mean() > -1)]), head)  # 1.0 for every image
    result = check.run_check(blind, {"grey": grey, "colour": colour}, ["color_saturation_hsv", "white_noise"])
    unchanged = {(p["source"], p["kind"]) for p in result.pairs() if p["unchanged"]}
    assert unchanged == {("grey", "color_saturation_hsv")}
    s = result.summary()
    assert s["unchanged_pairs"] == s["unchanged_still_pairs"] == 5 and s["still_pairs"] == 15
    assert s["ordered_share"] == 0.0  # the 15 pairs that changed all tie: misses
    assert "left out: 5 pairs" in check.report(result)


def test_noise_never_scores_above_its_clean_source():
    """CI version of `contrique-video degradation-check`: the built-in model with its default head, 2 held-out photos,
    every noise type at 5 levels."""
    from contrique_video.training.ranking import model_features

    extract, scorer = model_features(None)
    sources = {n: deg.load_pristine(n, None, 256) for n in (deg.SKLEARN_CHINA, deg.SKLEARN_FLOWER)}
    result = check.run_check(check.HeadScorer(extract, scorer.check_head()), sources, list(deg.NOISE_TYPES))
    bad = [p for p in result.pairs() if p["vs_clean"] > 0]
    assert not bad, check.report(result)
    assert len(result.pairs()) == 2 * 5 * 5


def test_gray_sources_are_the_photo_in_grey_levels():
    """``NAME#gray`` (noise-ladder sources of the noise-ladder fit term): one luma plane in all three channels."""
    rgb = deg.load_pristine("skimage:astronaut")
    gray = deg.load_pristine("skimage:astronaut#gray")
    assert gray.shape == rgb.shape and gray.dtype == np.uint8
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(gray[..., 0] - luma).max() <= 0.5 + 1e-9

"""Tests for the synthetic distortion bank (contrique_video.training.distortions)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from contrique_video.errors import InputError
from contrique_video.training import distortions as D

KADID_TYPES = (
    "gaussian_blur",
    "lens_blur",
    "motion_blur",
    "color_diffusion",
    "color_shift",
    "color_quantization",
    "color_saturation_hsv",
    "color_saturation_lab",
    "jpeg2000",
    "jpeg",
    "white_noise",
    "white_noise_color",
    "impulse_noise",
    "multiplicative_noise",
    "denoise",
    "brighten",
    "darken",
    "mean_shift",
    "jitter",
    "non_eccentricity_patch",
    "pixelate",
    "quantization",
    "color_block",
    "high_sharpen",
    "contrast_change",
)

# Types whose output depends on random draws (noise, positions, directions).
RANDOM_TYPES = (
    "motion_blur",
    "color_shift",
    "white_noise",
    "white_noise_color",
    "impulse_noise",
    "multiplicative_noise",
    "denoise",
    "jitter",
    "non_eccentricity_patch",
    "color_block",
)


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    img = Image.fromarray(data.astronaut()).resize((128, 128), Image.Resampling.BILINEAR)
    out = np.asarray(img).copy()
    out.setflags(write=False)  # distort() must never write into its input
    return out


@pytest.fixture(scope="module")
def outputs(image) -> dict[tuple[str, int], np.ndarray]:
    return {(k, lv): D.distort(image, k, lv, np.random.default_rng(0)) for k, lv in D.classes()}


def test_api_constants():
    assert D.NUM_LEVELS == 5
    assert D.TYPES[:25] == KADID_TYPES
    assert D.TYPES[25:] == ("h264", "hevc", "rescale")
    assert set(D.PARAMS) == set(D.TYPES)
    assert all(len(D.PARAMS[k]) == D.NUM_LEVELS for k in D.TYPES)
    cls = D.classes()
    assert len(cls) == len(D.TYPES) * D.NUM_LEVELS
    assert len(set(cls)) == len(cls)
    for i, (kind, level) in enumerate(cls):
        assert D.TYPES.index(kind) * D.NUM_LEVELS + level - 1 == i
        assert 1 <= level <= D.NUM_LEVELS


def test_shape_dtype_and_changed(image, outputs):
    for (kind, level), out in outputs.items():
        assert isinstance(out, np.ndarray), (kind, level)
        assert out.shape == image.shape and out.dtype == np.uint8, (kind, level, out.shape, out.dtype)
        assert _mae(out, image) > 0.3, f"{kind} level {level} barely changes the image"


@pytest.mark.parametrize("kind", D.TYPES)
def test_monotonic_degradation(image, outputs, kind):
    errs = [_mae(outputs[(kind, lv)], image) for lv in range(1, D.NUM_LEVELS + 1)]
    assert all(a < b for a, b in zip(errs, errs[1:])), f"{kind}: MAE per level {np.round(errs, 2).tolist()}"


@pytest.mark.parametrize("kind", ["mean_shift", "contrast_change", "rescale", "color_shift", "motion_blur"])
def test_monotonic_for_other_random_choices(image, kind):
    # These types draw a direction / filter; every draw must still degrade monotonically.
    for seed in range(1, 7):
        errs = [_mae(D.distort(image, kind, lv, np.random.default_rng(seed)), image) for lv in range(1, 6)]
        assert all(a < b for a, b in zip(errs, errs[1:])), f"{kind} seed {seed}: {np.round(errs, 2).tolist()}"


def test_deterministic_given_seed(image, outputs):
    for (kind, level), out in outputs.items():
        again = D.distort(image, kind, level, np.random.default_rng(0))
        assert np.array_equal(out, again), f"{kind} level {level} is not deterministic"


@pytest.mark.parametrize("kind", RANDOM_TYPES)
def test_different_seed_differs(image, outputs, kind):
    other = D.distort(image, kind, 3, np.random.default_rng(12345))
    assert not np.array_equal(outputs[(kind, 3)], other)


def test_odd_and_small_sizes():
    base = data.astronaut()
    for h, w in [(32, 32), (33, 47), (47, 33)]:
        img = base[100 : 100 + 2 * h : 2, 150 : 150 + w]  # odd size, non-contiguous view
        ref = img.copy()
        for kind, level in D.classes():
            if level not in (1, 5):
                continue
            out = D.distort(img, kind, level, np.random.default_rng(level))
            assert out.shape == img.shape and out.dtype == np.uint8, (kind, level, h, w)
            assert not np.array_equal(out, img), (kind, level, h, w)
        assert np.array_equal(img, ref)


def test_numpy_integer_level(image):
    out = D.distort(image, "jpeg", np.int64(2), np.random.default_rng(0))
    assert out.shape == image.shape


@pytest.mark.parametrize("kind", ["nope", "", "Gaussian_Blur", None])
def test_unknown_type_raises(image, kind):
    with pytest.raises(InputError, match="unknown distortion type"):
        D.distort(image, kind, 1, np.random.default_rng(0))


@pytest.mark.parametrize("level", [0, 6, -1, 2.0, "1", True, None])
def test_bad_level_raises(image, level):
    with pytest.raises(InputError, match="level") as info:
        D.distort(image, "jpeg", level, np.random.default_rng(0))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        np.zeros((16, 64, 3), np.uint8),
    ],
)
def test_bad_image_raises(bad):
    with pytest.raises(InputError):
        D.distort(bad, "jpeg", 1, np.random.default_rng(0))

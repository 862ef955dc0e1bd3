"""Frame sources (contrique_video.decode): codecs, colour, bit depth, rotation, VFR, stills,
stdin, early stopping, the decord backend, and the errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from media import (
    DEFAULT_COLOR,
    codec_available,
    expected_times,
    make_audio,
    make_clip,
    make_image,
    make_text,
    picture,
    rgb16_picture,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from PIL import Image, ImageOps

from contrique_video.decode.sampler import Sampling
from contrique_video.decode import Frame, open_source
from contrique_video.errors import ContriqueError, InputError, UnsupportedError

ROOT = Path(__file__).resolve().parents[2]
ALL = Sampling("all")

try:
    import decord  # noqa: F401

    HAVE_DECORD = True
except ImportError:
    HAVE_DECORD = False


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


def decode_all(path, **kwargs):
    with open_source(path, **kwargs) as src:
        return src, list(src.frames(ALL))


def marker_centre(rgb: np.ndarray) -> tuple[float, float]:
    """Row/column centre of the white 8x8 marker that 'moving'/'bars' pictures carry."""
    level = 200 if rgb.dtype == np.uint8 else 200 * 257
    ys, xs = np.nonzero((rgb > level).all(axis=2))
    return float(ys.mean()), float(xs.mean())


# --------------------------------------------------------------------------- codecs


CODEC_CASES = [
    ("h264.mp4", dict(codec="libx264", pix_fmt="yuv420p"), "h264", 8),
    ("h264_444.mkv", dict(codec="libx264", pix_fmt="yuv444p"), "h264", 8),
    ("hevc10.mkv", dict(codec="libx265", pix_fmt="yuv420p10le"), "hevc", 10),
    ("vp9.webm", dict(codec="libvpx-vp9", pix_fmt="yuv420p"), "vp9", 8),
    ("mpeg4.avi", dict(codec="mpeg4", pix_fmt="yuv420p"), "mpeg4", 8),
]


@pytest.mark.parametrize("name, kwargs, codec, depth", CODEC_CASES, ids=[c[0] for c in CODEC_CASES])
def test_codecs_decode_every_frame(media_dir, name, kwargs, codec, depth):
    if not codec_available(kwargs["codec"]):
        pytest.skip(f"FFmpeg in this PyAV build has no {kwargs['codec']} encoder")
    path = make_clip(media_dir / name, frames=12, **kwargs)
    src, frames = decode_all(path)
    assert (src.width, src.height) == (96, 64)
    assert src.codec == codec and src.bit_depth == depth
    assert src.fps == pytest.approx(24)
    assert src.duration == pytest.approx(0.5, abs=0.05)
    assert not src.is_image and src.path == str(path)
    assert [f.index for f in frames] == list(range(12))
    # Matroska/WebM store milliseconds, so 1/24 s comes back rounded
    assert [f.pts_time for f in frames] == pytest.approx(expected_times(12, 24), abs=6e-4)
    dtype = np.uint8 if depth == 8 else np.uint16
    scale = 1 if depth == 8 else 257
    for i, f in enumerate(frames):
        assert isinstance(f, Frame)
        assert f.rgb.shape == (64, 96, 3) and f.rgb.dtype == dtype and f.rgb.flags.c_contiguous
        # content survives encoding: close to the picture that was written
        err = np.abs(f.rgb.astype(np.float64) / scale - picture("moving", i, 96, 64)).mean()
        assert err < 12, (name, i, err)


def test_source_attributes_and_repr(media_dir):
    path = make_clip(media_dir / "attrs.mp4", frames=6)
    with open_source(Path(path)) as src:
        assert src.path == str(path)
        assert "96x64" in repr(src)
        assert src.decoder == "pyav"


# --------------------------------------------------------------------------- colour


def expected_rgb(color, colorspace, color_range):
    """What a decoder must output for a flat colour: the exact inverse of the rounded
    code values (the rounding alone moves it by up to ~1 level)."""
    codes = np.round(rgb_to_ycbcr(np.array(color, float), colorspace, color_range))
    return np.clip(ycbcr_to_rgb(codes, colorspace, color_range), 0, 255)


COLOUR = (200, 60, 30)


def test_matrices_differ_enough_for_the_test_to_mean_something():
    codes = rgb_to_ycbcr(np.array(COLOUR, float), "bt709", "tv")
    wrong_matrix = ycbcr_to_rgb(codes, "bt601", "tv")
    wrong_range = ycbcr_to_rgb(codes, "bt709", "pc")
    assert np.abs(wrong_matrix - COLOUR).max() > 10
    assert np.abs(wrong_range - COLOUR).max() > 10


@pytest.mark.parametrize(
    "colorspace, color_range, pix_fmt",
    [
        ("bt709", "tv", "yuv420p"),
        ("bt709", "pc", "yuv420p"),
        ("bt601", "tv", "yuv420p"),
        ("bt601", "pc", "yuv444p"),
    ],
)
def test_tagged_colour_is_decoded_with_its_matrix_and_range(media_dir, colorspace, color_range, pix_fmt):
    path = make_clip(
        media_dir / f"flat_{colorspace}_{color_range}_{pix_fmt}.mp4",
        frames=2,
        content="flat",
        color=COLOUR,
        colorspace=colorspace,
        color_range=color_range,
        pix_fmt=pix_fmt,
    )
    _, frames = decode_all(path)
    got = frames[0].rgb[8:-8, 8:-8].reshape(-1, 3).mean(axis=0)
    assert np.abs(got - expected_rgb(COLOUR, colorspace, color_range)).max() <= 3, got


@pytest.mark.parametrize("size, matrix", [((96, 64), "bt601"), ((1280, 720), "bt709")])
def test_untagged_colour_uses_bt601_for_sd_and_bt709_for_hd(media_dir, size, matrix):
    # make_clip writes untagged planes with the matrix the library must assume
    path = make_clip(media_dir / f"untagged_{size[1]}.mp4", size=size, frames=1, content="flat", color=COLOUR)
    _, frames = decode_all(path)
    got = frames[0].rgb[8:-8, 8:-8].reshape(-1, 3).mean(axis=0)
    assert np.abs(got - expected_rgb(COLOUR, matrix, "tv")).max() <= 3, got


def test_full_range_white_and_black_reach_0_and_255(media_dir):
    for name, rng in (("tv", "tv"), ("pc", "pc")):
        for color, want in (((255, 255, 255), 255), ((0, 0, 0), 0)):
            path = make_clip(
                media_dir / f"bw_{name}_{want}.mp4", frames=1, content="flat", color=color,
                colorspace="bt709", color_range=rng,
            )
            _, frames = decode_all(path)
            assert np.abs(frames[0].rgb.astype(int) - want).max() <= 2


# --------------------------------------------------------------------------- bit depth


@pytest.fixture(scope="module")
def ramp10(media_dir):
    # FFV1 is lossless, intra-only and built into FFmpeg: libx265's lossless mode once gave the muxer a
    # packet it refused on a CI machine, and this test is about bit depth, not about x265.
    return make_clip(
        media_dir / "ramp10.mkv", codec="ffv1", pix_fmt="yuv420p10le", size=(1024, 64), frames=2, content="ramp",
    )


def test_10bit_output_is_uint16_with_more_than_256_levels(ramp10):
    src, frames = decode_all(ramp10)
    assert src.bit_depth == 10
    rgb = frames[0].rgb
    assert rgb.dtype == np.uint16
    assert len(np.unique(rgb[..., 1])) > 256
    # the full 0..65535 scale: the ramp runs from black to white
    assert rgb.min() <= 300 and rgb.max() >= 65535 - 300


def test_10bit_flat_colour(media_dir):
    if not codec_available("libx265"):
        pytest.skip("no libx265 encoder in this PyAV build")
    path = make_clip(
        media_dir / "flat10.mkv", codec="libx265", pix_fmt="yuv420p10le", frames=1, content="flat",
        color=COLOUR, colorspace="bt709", color_range="tv",
    )
    _, frames = decode_all(path)
    got = frames[0].rgb[8:-8, 8:-8].reshape(-1, 3).mean(axis=0) / 257.0
    assert np.abs(got - np.array(COLOUR)).max() <= 1.5, got


# --------------------------------------------------------------------------- rotation


@pytest.fixture(scope="module")
def upright(media_dir):
    _, frames = decode_all(make_clip(media_dir / "rot_none.mp4", frames=3, content="bars"))
    return frames[0].rgb


@pytest.mark.parametrize(
    "rotation, hflip, expected",
    [
        (90, False, lambda a: np.rot90(a, 1)),  # counter-clockwise, like PyAV's frame.rotation
        (-90, False, lambda a: np.rot90(a, -1)),
        (180, False, lambda a: np.rot90(a, 2)),
        (0, True, lambda a: a[:, ::-1]),
    ],
)
def test_display_matrix_is_applied(media_dir, upright, rotation, hflip, expected):
    path = make_clip(media_dir / f"rot_{rotation}_{hflip}.mp4", frames=3, content="bars", rotation=rotation, hflip=hflip)
    src, frames = decode_all(path)
    want = expected(upright)
    assert (src.height, src.width) == want.shape[:2]
    assert frames[0].rgb.shape == want.shape and frames[0].rgb.flags.c_contiguous
    assert np.abs(frames[0].rgb.astype(int) - want.astype(int)).mean() < 1.0


def test_portrait_phone_clip_comes_out_portrait(media_dir):
    # stored landscape, display matrix says "turn 90 degrees clockwise", as phones write it
    path = make_clip(media_dir / "phone.mp4", size=(96, 64), frames=2, content="bars", rotation=-90)
    src, frames = decode_all(path)
    assert (src.width, src.height) == (64, 96)
    assert frames[0].rgb.shape == (96, 64, 3)
    row, col = marker_centre(frames[0].rgb)
    assert row < 10 and col > 54  # the top-left marker ends up top-right


# --------------------------------------------------------------------------- VFR


def test_vfr_times_come_from_pts(media_dir):
    path = make_clip(media_dir / "vfr.mp4", frames=12, vfr=True)
    src, frames = decode_all(path)
    want = expected_times(12, vfr=True)
    assert [f.index for f in frames] == list(range(12))
    assert [f.pts_time for f in frames] == pytest.approx(want, abs=1e-6)
    gaps = np.diff([f.pts_time for f in frames])
    assert gaps.max() - gaps.min() > 0.03  # really not evenly spaced


# --------------------------------------------------------------------------- early stop


def test_decoding_stops_when_the_selector_is_done(media_dir):
    path = make_clip(media_dir / "long.mp4", frames=72, gop=24)
    with open_source(path) as src:
        frames = list(src.frames(Sampling("all", duration=0.25)))
        assert [f.index for f in frames] == list(range(6))
        assert src.decoded_frames < 24  # decoder lookahead only, not the whole clip
        frames = list(src.frames(Sampling("frames", 2, duration=0.5)))  # a second pass works
        assert [f.index for f in frames] == [3, 9]  # targets 0.125 and 0.375 s
        assert src.warnings == []  # stopping early is no sign of damage
        assert src.decoded_frames < 24
        list(src.frames(ALL))
        assert src.decoded_frames == 72


def test_keyframes_mode_skips_non_key_frames(media_dir):
    path = make_clip(media_dir / "gop.mp4", frames=48, gop=12)
    with open_source(path) as src:
        frames = list(src.frames(Sampling("keyframes")))
        assert [f.index for f in frames] == [0, 12, 24, 36]
        assert [f.pts_time for f in frames] == pytest.approx([0, 0.5, 1.0, 1.5])
        assert src.decoded_frames < 24


def test_two_runs_give_identical_frames(media_dir):
    path = make_clip(media_dir / "det.mp4", frames=24)
    runs = []
    for _ in range(2):
        with open_source(path) as src:
            runs.append([(f.index, f.pts_time, f.rgb.tobytes()) for f in src.frames(Sampling("frames", 6))])
    assert runs[0] == runs[1]


def test_no_frame_in_range_is_an_input_error(media_dir):
    path = make_clip(media_dir / "short.mp4", frames=6)
    with open_source(path) as src:
        with pytest.raises(InputError, match="after the end"):
            list(src.frames(Sampling("all", start=10)))


# --------------------------------------------------------------------------- stills


def test_png_is_one_frame(media_dir):
    path = make_image(media_dir / "still.png")
    src, frames = decode_all(path)
    assert src.is_image and src.duration is None and src.bit_depth == 8
    assert (src.width, src.height) == (96, 64)
    assert len(frames) == 1 and frames[0].index == 0 and frames[0].pts_time == 0.0
    np.testing.assert_array_equal(frames[0].rgb, picture("bars", 0, 96, 64))


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tiff"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(media_dir, ext, orientation):
    path = make_image(media_dir / f"exif{orientation}{ext}", exif_orientation=orientation)
    with Image.open(path) as img:
        if img.getexif().get(0x0112) != orientation:
            pytest.skip(f"Pillow did not store EXIF orientation in {ext}")
        want = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    src, frames = decode_all(path)
    assert frames[0].rgb.shape == want.shape
    assert (src.height, src.width) == want.shape[:2]
    np.testing.assert_array_equal(frames[0].rgb, want)


def test_16bit_rgb_png_keeps_16_bits(media_dir):
    path = make_image(media_dir / "deep.png", mode="RGB16")
    src, frames = decode_all(path)
    assert src.bit_depth == 16
    rgb = frames[0].rgb
    assert rgb.dtype == np.uint16 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, rgb16_picture("bars", 96, 64))


def test_16bit_grey_png_keeps_16_bits(media_dir):
    path = make_image(media_dir / "grey16.png", mode="I;16")
    _, frames = decode_all(path)
    rgb = frames[0].rgb
    assert rgb.dtype == np.uint16 and rgb.shape == (64, 96, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb16_picture("bars", 96, 64)[..., 0])
    assert (rgb[..., 0] == rgb[..., 2]).all()


@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_other_image_modes_become_rgb(media_dir, mode):
    path = make_image(media_dir / f"mode_{mode}.png", mode=mode)
    _, frames = decode_all(path)
    assert frames[0].rgb.shape == (64, 96, 3) and frames[0].rgb.dtype == np.uint8


# --------------------------------------------------------------------------- stdin


def test_nut_stream_on_stdin(media_dir):
    path = make_clip(media_dir / "pipe.nut", frames=12)
    code = (
        "import json, logging\n"
        "from contrique_video.decode import open_source\n"
        "from contrique_video.decode.sampler import Sampling\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "with open_source('-') as src:\n"
        "    frames = list(src.frames(Sampling('all')))\n"
        "    print(json.dumps(dict(path=src.path, w=src.width, h=src.height, codec=src.codec,\n"
        "        idx=[f.index for f in frames], t=[f.pts_time for f in frames],\n"
        "        shape=list(frames[0].rgb.shape), mean=float(frames[0].rgb.mean()))))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(path, "rb") as stdin:
        proc = subprocess.run(
            [sys.executable, "-c", code], stdin=stdin, capture_output=True, env=env, timeout=60, cwd=ROOT
        )
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["path"] == "-" and (out["w"], out["h"]) == (96, 64)
    assert out["idx"] == list(range(12))
    assert out["t"] == pytest.approx(expected_times(12, 24), abs=1e-6)
    assert out["shape"] == [64, 96, 3]
    # the same pixels as reading the file
    _, frames = decode_all(path)
    assert out["mean"] == pytest.approx(float(frames[0].rgb.mean()))
    assert proc.stderr == b""  # H.264 in NUT is no default re-encode: no warning


def _read_stdin(path) -> tuple[dict, list[str]]:
    """Open ``path`` as stdin in a fresh interpreter: (its warnings and frame count, its stderr lines)."""
    code = (
        "import json, logging\n"
        "from contrique_video.decode import open_source\n"
        "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "with open_source('-') as src:\n"
        "    n = len(list(src.frames()))\n"
        "    print(json.dumps(dict(codec=src.codec, frames=n, warnings=src.warnings)))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(path, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-c", code], stdin=stdin, capture_output=True, env=env, timeout=60,
                              cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout), proc.stderr.decode().splitlines()


def test_ffmpeg_default_mpeg4_in_nut_on_stdin_warns_once(media_dir):
    """`ffmpeg -i X -f nut -` without -c:v pipes an mpeg4 re-encode: scoring it silently scores the wrong video."""
    path = make_clip(media_dir / "default.nut", codec="mpeg4", frames=6)
    out, err = _read_stdin(path)
    assert out["codec"] == "mpeg4" and out["frames"] >= 5  # still scored (NUT declares 5 frames of duration)
    assert len(err) == 1 and err[0].startswith("stdin: the piped stream is mpeg4 in nut")
    assert "-c:v rawvideo" in err[0] and "-c:v copy" in err[0]
    assert out["warnings"] == [err[0].removeprefix("stdin: ")]


def test_rawvideo_nut_on_stdin_does_not_warn(media_dir):
    path = make_clip(media_dir / "raw.nut", codec="rawvideo", frames=4)
    out, err = _read_stdin(path)
    assert out["codec"] == "rawvideo" and out["warnings"] == [] and err == []


def test_the_same_mpeg4_file_read_by_name_does_not_warn(media_dir):
    path = make_clip(media_dir / "named.nut", codec="mpeg4", frames=4)
    with open_source(path) as src:
        assert src.warnings == []


# --------------------------------------------------------------------------- damaged and HDR input


def test_truncated_mkv_is_decoded_with_one_warning(media_dir, caplog):
    whole = make_clip(media_dir / "whole.mkv", frames=24)
    cut = media_dir / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # `head -c` half of it
    with caplog.at_level("WARNING", logger="contrique_video"):
        with open_source(cut) as src:
            frames = list(src.frames(ALL))
            assert 0 < len(frames) < 24
            assert len(src.warnings) == 1 and src.warnings[0].startswith("damaged or truncated: ")
            assert "of the 1.00 s the container declares" in src.warnings[0]
            list(src.frames(Sampling("frames", 2)))  # a second pass does not say it again
    assert [r.getMessage() for r in caplog.records] == [f"{cut}: {src.warnings[0]}"]
    with open_source(whole) as src:
        assert len(list(src.frames(ALL))) == 24 and src.warnings == []


def test_truncated_mkv_with_frames_sampling_warns_too(media_dir):
    whole = make_clip(media_dir / "whole8.mkv", frames=24)
    cut = media_dir / "cut8.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with open_source(cut) as src:
        frames = list(src.frames(Sampling("frames", 8)))  # targets past the cut are never reached
        assert frames and "truncated" in src.warnings[0]


@pytest.mark.parametrize("transfer", ["pq", "hlg"])
def test_hdr_transfer_is_reported(media_dir, transfer, caplog):
    path = make_clip(media_dir / f"{transfer}.mkv", frames=3, pix_fmt="yuv420p10le", colorspace="bt2020",
                     transfer=transfer)
    with caplog.at_level("WARNING", logger="contrique_video"):
        src, frames = decode_all(path)
    assert src.hdr == transfer and len(frames) == 3
    assert src.warnings == [f"HDR ({transfer.upper()}) video is scored as SDR: the model only knows SDR, and the "
                            f"frames are scored as decoded, without tone mapping"]
    assert len(caplog.records) == 1
    sdr, _ = decode_all(make_clip(media_dir / "bt2020sdr.mkv", frames=2, pix_fmt="yuv420p10le", colorspace="bt2020"))
    assert sdr.hdr is None and sdr.warnings == []


# --------------------------------------------------------------------------- errors


def assert_one_line(exc: BaseException, *words: str) -> None:
    message = str(exc)
    assert message and "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as info:
        open_source(tmp_path / "nope.mp4")
    assert_one_line(info.value, "no such file", "nope.mp4")


def test_directory(tmp_path):
    with pytest.raises(InputError) as info:
        open_source(tmp_path)
    assert_one_line(info.value, "directory")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError) as info:
        open_source(tmp_path / "empty.mp4")
    assert_one_line(info.value, "empty", "empty.mp4")


@pytest.mark.parametrize("name", ["notes.txt", "fake.mp4"])
def test_non_media_file(tmp_path, name):
    path = make_text(tmp_path / name, "hello, this is plain text and not a video at all\n" * 20)
    with pytest.raises(InputError) as info:
        open_source(path)
    assert_one_line(info.value, name)


def test_non_image_with_image_extension(tmp_path):
    path = make_text(tmp_path / "fake.png")
    with pytest.raises(InputError) as info:
        open_source(path)
    assert_one_line(info.value, "fake.png")


@pytest.mark.parametrize("name", ["tone.wav", "tone.m4a"])
def test_file_without_video_stream(tmp_path, name):
    path = make_audio(tmp_path / name)
    with pytest.raises(InputError) as info:
        open_source(path)
    assert_one_line(info.value, "no video stream", name)


def test_unknown_decoder(media_dir):
    path = make_clip(media_dir / "dec.mp4", frames=2)
    with pytest.raises(InputError) as info:
        open_source(path, decoder="opencv")
    assert_one_line(info.value, "opencv", "pyav", "decord")


def test_decord_not_installed(media_dir, monkeypatch):
    path = make_clip(media_dir / "nodecord.mp4", frames=2)
    monkeypatch.setitem(sys.modules, "decord", None)  # makes `import decord` fail
    with pytest.raises(UnsupportedError) as info:
        open_source(path, decoder="decord")
    assert_one_line(info.value, "pip install 'contrique-video[decord]'")
    assert isinstance(info.value, ContriqueError)


def test_decord_cannot_read_stdin():
    with pytest.raises(UnsupportedError) as info:
        open_source("-", decoder="decord")
    assert_one_line(info.value, "stdin")


def test_bad_thread_count(media_dir):
    path = make_clip(media_dir / "thr.mp4", frames=2)
    with pytest.raises(InputError):
        open_source(path, threads=-1)


# --------------------------------------------------------------------------- decord


decord_only = pytest.mark.skipif(not HAVE_DECORD, reason="decord (pip install decord2) is not installed")


@decord_only
@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("d_h264.mp4", dict(frames=24, gop=8)),
        ("d_vfr.mp4", dict(frames=12, vfr=True)),
        ("d_rot.mp4", dict(frames=6, rotation=90)),
        ("d_flip.mp4", dict(frames=6, hflip=True)),
        ("d_vp9.webm", dict(frames=12, codec="libvpx-vp9")),
    ],
)
def test_decord_matches_pyav(media_dir, name, kwargs):
    path = make_clip(media_dir / name, **kwargs)
    for sampling in (ALL, Sampling("frames", 5), Sampling("keyframes"), Sampling("fps", 10, start=0.1)):
        with open_source(path) as a, open_source(path, decoder="decord") as b:
            assert b.decoder == "decord"
            assert (a.width, a.height, a.duration, a.fps) == (b.width, b.height, b.duration, b.fps)
            fa, fb = list(a.frames(sampling)), list(b.frames(sampling))
        assert [f.index for f in fa] == [f.index for f in fb]
        assert [f.pts_time for f in fa] == [f.pts_time for f in fb]
        for x, y in zip(fa, fb):
            assert x.rgb.shape == y.rgb.shape and y.rgb.dtype == np.uint8 and y.rgb.flags.c_contiguous
            assert np.abs(x.rgb.astype(int) - y.rgb.astype(int)).mean() < 1.0


@decord_only
@pytest.mark.parametrize("size", [(64, 64), (96, 64), (96, 96), (112, 64), (144, 80), (176, 96), (200, 112)])
def test_decord_matches_pyav_at_every_width(media_dir, size):
    """decord2 pads rows at some widths on some CPUs (96 and 144 on AVX-512); the frames must not change."""
    path = make_clip(media_dir / f"d_w{size[0]}x{size[1]}.mp4", size=size, frames=9)
    with open_source(path) as a, open_source(path, decoder="decord") as b:
        fa, fb = list(a.frames(ALL)), list(b.frames(ALL))
    assert [f.index for f in fa] == [f.index for f in fb]
    for x, y in zip(fa, fb):
        assert y.rgb.shape == (size[1], size[0], 3) and y.rgb.flags.c_contiguous
        assert np.abs(x.rgb.astype(int) - y.rgb.astype(int)).mean() < 1.0


def test_decord_row_padding_is_removed():
    """A frame whose rows carry padding, shaped by decord as 4 channels, reads back exactly."""
    from contrique_video.decode.decord import _unpad_rows

    h, w, stride = 64, 96, 384
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    padded = np.zeros((h, stride), np.uint8)
    padded[:, : 3 * w] = rgb.reshape(h, -1)
    got = _unpad_rows(padded.reshape(h, w, 4), "x.mp4")
    np.testing.assert_array_equal(got, rgb)
    assert _unpad_rows(rgb, "x.mp4") is rgb
    with pytest.raises(InputError):
        _unpad_rows(np.zeros((h, w, 2), np.uint8), "x.mp4")


@decord_only
@pytest.mark.parametrize("size", [(96, 64), (144, 80)])
def test_decord_padded_frames_match_pyav(media_dir, size):
    """What decord2 does on AVX-512 CPUs: its batch call fails, and a single frame comes back with rows
    padded to 4 bytes a pixel (FFmpeg aligns an RGB row to 64 bytes by widening it). Replayed on other
    CPUs; on an AVX-512 CPU, where decord pads by itself, its frames pass through as they are."""
    path = make_clip(media_dir / f"d_pad{size[0]}.mp4", size=size, frames=9)
    with open_source(path) as a, open_source(path, decoder="decord") as b:
        real = b._vr

        class Padding:
            def get_batch(self, idx):
                raise RuntimeError("Check failed: (24576 vs. 18432) ")

            def __getitem__(self, i):
                rgb = real[i].asnumpy()
                if rgb.shape[2] != 3:  # this CPU's decord padded the rows itself
                    return real[i]
                h, w = rgb.shape[:2]
                rows = np.zeros((h, 4 * w), np.uint8)
                rows[:, : 3 * w] = rgb.reshape(h, -1)
                return SimpleNamespace(asnumpy=lambda: rows.reshape(h, w, 4))

        b._vr = Padding()
        fa, fb = list(a.frames(ALL)), list(b.frames(ALL))
    assert [f.index for f in fa] == [f.index for f in fb] and len(fb) == 9
    for x, y in zip(fa, fb):
        assert y.rgb.shape == (size[1], size[0], 3) and y.rgb.flags.c_contiguous
        assert np.abs(x.rgb.astype(int) - y.rgb.astype(int)).mean() < 1.0


@decord_only
def test_decord_truncated_mkv_warns_once_and_keeps_ffmpeg_quiet(media_dir, capfd):
    """decord reads what the cut file holds; the warning and record say what was lost, and decord's FFmpeg
    prints none of its own lines ("File ended prematurely")."""
    whole = make_clip(media_dir / "d_whole.mkv", frames=24)
    cut = media_dir / "d_cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with open_source(cut, decoder="decord") as src:
        assert 0 < len(list(src.frames(ALL))) < 24
        assert len(src.warnings) == 1 and "of the 1.00 s the container declares" in src.warnings[0]
    with open_source(whole, decoder="decord") as src:
        assert len(list(src.frames(ALL))) == 24 and src.warnings == []
    assert "[matroska" not in capfd.readouterr().err


@decord_only
def test_decord_failure_is_one_line(media_dir, monkeypatch):
    path = make_clip(media_dir / "d_fail.mp4", frames=4)
    with open_source(path, decoder="decord") as b:

        class Broken:
            def get_batch(self, idx):
                raise RuntimeError("[04:34:25] /project/src/runtime/ndarray.cc:171: Check failed\nstack trace")

            def __getitem__(self, i):
                raise RuntimeError("[04:34:25] Check failed\nmore")

        b._vr = Broken()
        with pytest.raises(InputError) as info:
            list(b.frames(ALL))
    assert "\n" not in str(info.value) and "decord failed to decode" in str(info.value)


@decord_only
def test_decord_untagged_hd_uses_bt709_too(media_dir):
    path = make_clip(media_dir / "d_hd.mp4", size=(1280, 720), frames=1, content="flat", color=COLOUR)
    with open_source(path, decoder="decord") as b:
        got = next(iter(b.frames(ALL))).rgb[8:-8, 8:-8].reshape(-1, 3).mean(axis=0)
    assert np.abs(got - expected_rgb(COLOUR, "bt709", "tv")).max() <= 3, got


@decord_only
def test_decord_reads_images_with_pillow(media_dir):
    path = make_image(media_dir / "d_still.png")
    with open_source(path, decoder="decord") as src:
        assert src.is_image
        np.testing.assert_array_equal(next(iter(src.frames())).rgb, picture("bars", 0, 96, 64))


def test_default_colour_constant_is_what_tests_use():
    assert DEFAULT_COLOR == COLOUR


def test_metadata_that_is_not_utf8_does_not_stop_scoring(tmp_path):
    """Tags are written by all kinds of tools; a title in Latin-1 must not make the file unreadable."""
    import av

    path = tmp_path / "tagged.mkv"
    with av.open(str(path), "w") as dst:
        dst.metadata["title"] = "TITLEMARK"
        stream = dst.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(3):
            dst.mux(stream.encode(av.VideoFrame.from_ndarray(picture("moving", i, 96, 64), format="rgb24")))
        dst.mux(stream.encode(None))
    data = path.read_bytes()
    assert b"TITLEMARK" in data
    path.write_bytes(data.replace(b"TITLEMARK", b"T\xe9TLEMARK"))
    with open_source(path) as src:
        assert len(list(src.frames(Sampling("all")))) == 3


def test_max_pixels_refuses_a_still_from_its_header_before_decoding(tmp_path):
    """The size check must come before the decode: a truncated file proves nothing was decoded."""
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((200, 300, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:120])  # header intact, pixel data cut
    with pytest.raises(InputError, match=r"300x200 frames exceed --max-pixels 1000"):
        open_source(path, max_pixels=1000)
    with pytest.raises(InputError, match="cannot decode image"):
        open_source(path)


def test_a_registered_decoder_is_offered_everywhere(media_dir):
    """A decoder is one registration: open_source, the CLI's --decoder choice and `info` read the registry."""
    from contrique_video.decode import DECODERS

    clip = make_clip(media_dir / "fake.mp4", frames=6)
    register = ("import sys\n"
                "from contrique_video.decode import PyAVSource, open_source\n"
                "from contrique_video.decode.registry import register_decoder\n"
                "@register_decoder('fake', requires='av', description='PyAV under another name')\n"
                "def fake(path, threads, device, seek):\n"
                "    print('fake opened', path, file=sys.stderr)\n"
                "    return PyAVSource(path, threads=threads, device=device, seek=seek)\n"
                "from contrique_video.cli import main\n"
                "main(sys.argv[1:])\n")

    def run(*args):
        return subprocess.run([sys.executable, "-c", register, *map(str, args)], capture_output=True, text=True,
                              timeout=300)

    info = run("info")
    assert info.returncode == 0 and "pyav yes, decord " in info.stdout and ", fake yes" in info.stdout
    scored = run("-q", "score", clip, "--decoder", "fake", "--frames", "2", "--backend", "torch", "--format", "json")
    assert scored.returncode == 0, scored.stderr
    assert f"fake opened {clip}" in scored.stderr and json.loads(scored.stdout)["frames_scored"] == 2
    stdin = run("-q", "score", "-", "--decoder", "fake")
    assert stdin.returncode == 1 and "fake cannot read from stdin" in stdin.stderr
    assert "fake" not in DECODERS  # registered in that process only
    from click.testing import CliRunner

    from contrique_video.cli import main

    res = CliRunner().invoke(main, ["-q", "score", str(clip), "--decoder", "fake"])
    assert res.exit_code == 2 and "'fake' is not one of 'pyav', 'decord'" in res.output

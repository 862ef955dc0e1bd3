"""Encoding of samples and renditions: sizes, spans, colour tags, encoder checks and ffmpeg failures."""

from __future__ import annotations

import av
import pytest
from encoding_helpers import fake_ffmpeg, real_ffmpeg
from media import make_clip

from contrique_video.encoding.encode import check_encoder, encode, lossless_reel, upscale
from contrique_video.encoding.transcode import scaled_size
from contrique_video.errors import EncodeError, InputError, UnsupportedError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("enc") / "src.mp4", size=(160, 90), frames=48, colorspace="bt709",
                     color_range="tv")


def test_scaled_size_keeps_aspect_and_even():
    assert scaled_size(1920, 1080, 720) == (1280, 720)
    assert scaled_size(1920, 1080, 540) == (960, 540)
    assert scaled_size(160, 90, 63) == (112, 62)
    assert scaled_size(161, 91, None) == (160, 90)


def test_encode_downscales_and_lower_crf_costs_more(clip, tmp_path):
    lo = encode(clip, tmp_path / "lo.mkv", "libx264", 20, height=72, preset="ultrafast")
    hi = encode(clip, tmp_path / "hi.mkv", "libx264", 40, height=72, preset="ultrafast")
    assert (lo.width, lo.height, lo.frames) == (128, 72, 48)
    assert lo.seconds == pytest.approx(2.0)
    assert lo.bytes > hi.bytes > 0
    assert lo.kbps == pytest.approx(lo.bytes * 8 / 2.0 / 1000)


def test_rendition_keeps_source_colour_tags(clip, tmp_path):
    out = encode(clip, tmp_path / "r.mkv", "libx264", 30, height=72, preset="ultrafast")
    with av.open(str(out.path)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_range) == (1, 1)  # BT.709, limited: not the 601 a 72-line frame implies


def test_reel_takes_only_the_spans(clip, tmp_path):
    reel = lossless_reel(clip, tmp_path / "reel.mkv", [(0.25, 0.5), (1.25, 0.25)])
    assert reel.frames == 12 + 6
    assert (reel.width, reel.height) == (160, 90)


def test_upscale_reaches_display_size(clip, tmp_path):
    small = encode(clip, tmp_path / "s.mkv", "libx264", 30, height=64, preset="ultrafast")
    big = upscale(small.path, tmp_path / "big.mkv", (320, 180))
    assert (big.width, big.height, big.frames) == (320, 180, 48)


def test_encoder_checks():
    with pytest.raises(UnsupportedError, match="unknown encoder 'libfoo'"):
        check_encoder("libfoo")
    with pytest.raises(UnsupportedError, match="libaom-av1 is not available in PyAV's FFmpeg .*--ffmpeg"):
        check_encoder("libaom-av1")
    with pytest.raises(InputError, match="no such executable"):
        check_encoder("libx264", ffmpeg="/no/such/ffmpeg")


def test_crf_out_of_range(clip, tmp_path):
    with pytest.raises(InputError, match="CRF 70 is outside libx264's range 0..51"):
        encode(clip, tmp_path / "x.mkv", "libx264", 70)


def test_external_ffmpeg_encodes_and_reports_failure(clip, tmp_path):
    out = encode(clip, tmp_path / "ext.mkv", "libx264", 30, height=72, preset="ultrafast", ffmpeg=real_ffmpeg())
    assert (out.width, out.height, out.frames) == (128, 72, 48)
    broken = fake_ffmpeg(tmp_path, fail_from_call=1, code=3)
    with pytest.raises(EncodeError, match=r"^ffmpeg exited with code 3 while encoding src.mp4 .*simulated encoder crash$"):
        encode(clip, tmp_path / "bad.mkv", "libx264", 30, ffmpeg=str(broken))

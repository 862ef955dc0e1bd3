"""Encoding of samples and renditions: sizes, spans, colour tags, encoder checks and ffmpeg failures."""

from __future__ import annotations

import av
import pytest
from encoding_helpers import fake_ffmpeg, real_ffmpeg
from media import make_clip

from contrique_video.encoding.encode import check_encoder, encode, encoder_spec, ffmpeg_args, lossless_reel, upscale
from contrique_video.errors import EncodeError, InputError, UnsupportedError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("enc") / "src.mp4", size=(160, 90), frames=48, colorspace="bt709",
                     color_range="tv")


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


def test_reel_takes_only_the_spans_losslessly(clip, tmp_path):
    reel = lossless_reel(clip, tmp_path / "reel.mkv", [(0.25, 0.5), (1.25, 0.25)])
    assert reel.frames == 12 + 6
    assert (reel.width, reel.height) == (160, 90)
    with av.open(str(clip)) as c:
        source = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    with av.open(str(reel.path)) as c:
        cut = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    assert all((a == b).all() for a, b in zip(cut, source[6:18] + source[30:36]))  # the same pixels, in order


def test_upscale_reaches_display_size(clip, tmp_path):
    small = encode(clip, tmp_path / "s.mkv", "libx264", 30, height=64, preset="ultrafast")
    big = upscale(small.path, tmp_path / "big.mkv", (320, 180))
    assert (big.width, big.height, big.frames) == (320, 180, 48)


def test_encoder_checks():
    with pytest.raises(UnsupportedError, match="encoder libfoo is not available in .*--ffmpeg PATH"):
        check_encoder("libfoo")
    with pytest.raises(InputError, match="no such executable"):
        check_encoder("libx264", ffmpeg="/no/such/ffmpeg")


def test_any_encoder_by_name_with_its_quality_option():
    """Hardware encoders need no device to be named: their quality option and range come from the family
    (ab-av1's choice) and the range the binary states; others need --quality-option unless they have -crf."""
    exe = real_ffmpeg()
    nvenc = check_encoder("hevc_nvenc", exe)
    assert (nvenc.quality_option, nvenc.crf_min, nvenc.crf_max) == ("cq", 0, 51)
    assert check_encoder("h264_qsv", exe).quality_option == "global_quality"
    assert check_encoder("av1_vaapi", exe).quality_option == "qp"
    args = ffmpeg_args("in.mkv", "out.mp4", "h264_nvenc", 30, ffmpeg=exe)
    assert args[args.index("-c:v") + 1:args.index("-pix_fmt")] == ["h264_nvenc", "-cq", "30"]
    with pytest.raises(UnsupportedError, match="no known quality option; name it with --quality-option"):
        encoder_spec("mpeg4", exe)
    assert encoder_spec("mpeg4", exe, "q:v").quality_option == "q:v"


def test_no_ffmpeg_is_one_line_naming_the_extra(monkeypatch):
    import contrique_video.ffmpeg as cli

    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(cli, "_bundled_ffmpeg", lambda: None)
    with pytest.raises(UnsupportedError, match=r"^encoding needs the ffmpeg CLI: .*contrique-video\[vmaf\]"):
        check_encoder("libx264")


def test_crf_out_of_range(clip, tmp_path):
    with pytest.raises(InputError, match="CRF 70 is outside libx264's range 0..51"):
        encode(clip, tmp_path / "x.mkv", "libx264", 70)


def test_external_ffmpeg_encodes_and_reports_failure(clip, tmp_path):
    out = encode(clip, tmp_path / "ext.mkv", "libx264", 30, height=72, preset="ultrafast", ffmpeg=real_ffmpeg())
    assert (out.width, out.height, out.frames) == (128, 72, 48)
    broken = fake_ffmpeg(tmp_path, fail_from_call=1, code=3)
    with pytest.raises(EncodeError, match=r"^ffmpeg exited with code 3 while encoding src.mp4 .*simulated encoder crash$"):
        encode(clip, tmp_path / "bad.mkv", "libx264", 30, ffmpeg=str(broken))
    assert not (tmp_path / "bad.mkv").exists()

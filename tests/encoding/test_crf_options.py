"""crf-search at ab-av1's level: --enc, --preset, --pix-format, --vfilter, --keyint, --max-encoded-percent,
--pool, size and encode-time predictions, and --encode (auto-encode) with its `encode` event."""

from __future__ import annotations

import json
import re

import av
import pytest
from click.testing import CliRunner
from encoding_helpers import StubScorer, leftovers, photo_pan, real_ffmpeg
from media import make_clip
from checkpoints import small_model_with_head

from contrique_video.api import Scorer, builtin_card
from contrique_video.cli import main
from contrique_video.encoding.crf_search import SearchSettings, crf_search, encode_chosen, pooled_score
from contrique_video.encoding.encode import (
    ENCODERS,
    EncodeSettings,
    encode,
    encoder_options,
    parse_enc,
)
from contrique_video.encoding.sampling import centred
from contrique_video.errors import InputError


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("crfopts")
    make_clip(d / "src.mp4", size=(160, 90), frames=48, content="moving")
    small_model_with_head(d, head_seed=1)
    return d


def stream_facts(path):
    with av.open(str(path)) as f:
        s = f.streams.video[0]
        keys = [p.is_keyframe for p in f.demux(s) if p.size]
        return s.codec_context.pix_fmt, s.width, s.height, keys


def test_options_are_passed_and_enc_overrides_ours():
    opts = encoder_options(ENCODERS["libx264"], 30, "fast", 48, parse_enc(["-tune=grain", "preset=slow"]))
    assert opts == {"crf": "30", "preset": "slow", "g": "48", "tune": "grain"}
    assert parse_enc(["x265-params=aq-mode=3:psy-rd=1"]) == (("x265-params", "aq-mode=3:psy-rd=1"),)
    for bad, message in (("tune", "give KEY=VALUE"), ("=3", "give KEY=VALUE"), ("crf=20", "the CRF is what")):
        with pytest.raises(InputError, match=message):
            parse_enc([bad])


def test_encode_applies_pix_format_vfilter_keyint_and_enc(d, tmp_path):
    settings = EncodeSettings("ultrafast", "yuv420p10le", "scale=80:-2,hflip", 5, (("x264-params", "ref=2"),))
    out = encode(d / "src.mp4", tmp_path / "o.mkv", "libx264", 30, settings=settings)
    pix, w, h, keys = stream_facts(out.path)
    assert (pix, w, h) == ("yuv420p10le", 80, 46)
    assert [i for i, k in enumerate(keys) if k] == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    sei = re.search(rb"options: [^\x00]*", out.path.read_bytes()).group(0).decode()  # x264 writes its settings
    assert " ref=2 " in sei and " keyint=5 " in sei and " subme=0 " in sei  # subme=0: the ultrafast preset


def test_search_reports_pool_size_share_and_encode_time(d, tmp_path):
    events = []
    crf_search(d / "src.mp4", StubScorer(), "libx264", 50.0, workdir=tmp_path, on_event=events.append,
               search=SearchSettings(samples=2, sample_duration=0.5, max_probes=8, pool="p5", max_encoded_percent=0.5),
                        settings=EncodeSettings("ultrafast", keyint=12, extra=(("tune", "zerolatency"),)))
    samples, probes, final = events[0], [e for e in events if e["type"] == "probe"], events[-1]
    assert samples["pool"] == "p5" and samples["keyint"] == 12 and samples["enc"] == {"tune": "zerolatency"}
    assert all(p["encode_seconds"] > 0 for p in probes)
    size = (d / "src.mp4").stat().st_size
    assert final["predicted_percent"] == pytest.approx(100 * final["predicted_bytes"] / size, abs=0.01)
    assert final["predicted_encode_seconds"] > 0 and final["pool"] == "p5"
    assert final["too_big"] is (final["predicted_percent"] > 0.5) is True  # a tiny limit refuses the CRF
    assert leftovers(tmp_path) == []


def test_pooled_score_picks_the_statistic(d):
    scorer = Scorer(weights=d / "r18.pt", head=d / "head.json", backend="torch")
    result = scorer.score(d / "src.mp4", sampling=centred(6, 2.0))
    scores = result.frames["score"]
    assert pooled_score(result, "mean") == result.score
    assert pooled_score(result, "min") == scores.min()
    assert pooled_score(result, "p1") == pytest.approx(scores.quantile(0.01))
    assert pooled_score(result, "p5") == pytest.approx(scores.quantile(0.05))


def test_encode_chosen_scores_the_full_encode_on_the_pool(d, tmp_path):
    stub = StubScorer()
    result = crf_search(d / "src.mp4", stub, "libx264", 50.0, settings=EncodeSettings("ultrafast"), workdir=tmp_path,
                        search=SearchSettings(samples=2, sample_duration=0.5, max_probes=8, pool="p5"))
    event = encode_chosen(d / "src.mp4", tmp_path / "full.mp4", result, stub, frames=4,
                          settings=EncodeSettings("ultrafast"))
    assert event["type"] == "encode" and event["crf"] == result.crf and event["pool"] == "p5"
    assert (tmp_path / "full.mp4").stat().st_size == event["bytes"]
    assert event["score"] == pytest.approx(stub.score(tmp_path / "full.mp4").score)
    assert event["percent"] == pytest.approx(100 * event["bytes"] / (d / "src.mp4").stat().st_size, abs=0.01)


def cli(d, *args):
    return CliRunner().invoke(main, ["crf-search", str(d / "src.mp4"), "--weights", str(d / "r18.pt"), "--head",
                                     str(d / "head.json"), "--backend", "torch", *map(str, args)],
                              catch_exceptions=False)


def test_cli_encode_event_matches_scoring_the_file(d, tmp_path):
    out = tmp_path / "auto.mkv"
    res = cli(d, "--target", 30, "--pool", "p1", "--samples", 2, "--sample-duration", 0.5, "--frames", 2,
              "--max-probes", 2, "--preset", "ultrafast", "--pix-format", "yuv420p10le", "--keyint", 24,
              "--vfilter", "scale=128:-2", "--enc", "tune=grain", "--encode", out, "--format", "ndjson", "-q")
    events = [json.loads(x) for x in res.stdout.splitlines()]
    assert [e["type"] for e in events][-2:] == ["result", "encode"], res.stderr
    assert res.exit_code == 0
    enc = events[-1]
    assert enc["path"] == str(out) and enc["crf"] == events[-2]["crf"] and enc["pool"] == "p1"
    assert stream_facts(out)[:3] == ("yuv420p10le", 128, 72)
    again = Scorer(weights=d / "r18.pt", head=d / "head.json", backend="torch").score(out, sampling=centred(4, 2.0))
    assert enc["score"] == pytest.approx(pooled_score(again, "p1"))
    assert enc["frames_scored"] == 4


def test_cli_table_and_too_big(d, tmp_path):
    res = cli(d, "--target", 1, "--samples", 1, "--sample-duration", 0.5, "--frames", 1, "--max-probes", 1,
              "--preset", "ultrafast", "--max-encoded-percent", 0.001, "--encode", tmp_path / "never.mp4", "-q")
    assert res.exit_code == 1
    assert "% of the input" in res.stdout and "about" in res.stdout
    assert "above --max-encoded-percent 0.001" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never.mp4").exists()


@pytest.mark.parametrize("args, message", [
    (["--pix-format", "yuv420p12le"], "--pix-format yuv420p12le: libx264 cannot encode it; it takes yuv420p"),
    (["--pix-format", "nonsense"], "--pix-format nonsense: no such pixel format"),
    (["--enc", "bogus=1"], "--enc bogus: libx264 has no such option"),
    (["--enc", "tune"], "give KEY=VALUE"),
    (["--enc", "crf=20"], "the CRF is what the search chooses"),
    (["--vfilter", "nosuchfilter=3"], "--vfilter 'nosuchfilter=3': "),
    (["--keyint", 0], "--keyint 0: give a positive number"),
    (["--pool", "median"], "Invalid value for '--pool'"),
    (["--max-encoded-percent", 0], "Invalid value for '--max-encoded-percent'"),
    (["--encode", "nofolder/out.mp4"], "the folder nofolder does not exist"),
    (["--encode", "src.mp4"], "--encode: output src.mp4 is also an input"),
])
def test_bad_values_are_usage_errors_in_one_line(d, args, message, monkeypatch):
    monkeypatch.chdir(d)
    res = cli(d, "--target", 40, *args)
    assert res.exit_code == 2, res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_options_are_not_checked_against_an_ffmpeg_that_lacks_the_encoder():
    from contrique_video.ffmpeg import encoder_help

    assert encoder_help("libnosuch", real_ffmpeg()) is None  # "not recognized" is not a list of no options
    assert "Supported pixel formats" in encoder_help("libx264", real_ffmpeg())


def clip_with_sound(path, frames: int = 24, fps: int = 24, rate: int = 16000):
    """A short clip with an AAC tone beside the picture (media.py writes video only)."""
    from fractions import Fraction

    import numpy as np

    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = 128, 96, "yuv420p"
        a = c.add_stream("aac", rate=rate)
        samples = frames * rate // fps
        tone = (np.sin(np.arange(samples) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16)
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.full((96, 128, 3), i * 9 % 255, np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in v.encode(f):
                c.mux(p)
        for start in range(0, samples, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="s16", layout="mono")
            af.sample_rate, af.pts = rate, start
            for p in a.encode(af):
                c.mux(p)
        for stream in (v, a):
            for p in stream.encode():
                c.mux(p)
    return path


def audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def test_the_final_encode_copies_the_sound(tmp_path):
    src = clip_with_sound(tmp_path / "s.mp4")
    out = encode(src, tmp_path / "o.mp4", "libx264", 30, settings=EncodeSettings("ultrafast"), audio=True)
    assert out.frames == 24
    assert audio_packets(out.path) == audio_packets(src)  # copied, not re-encoded, none lost
    plain = encode(src, tmp_path / "v.mp4", "libx264", 30, settings=EncodeSettings("ultrafast"))
    with av.open(str(plain.path)) as c:
        assert [s.type for s in c.streams] == ["video"]  # probes and renditions stay video only


def test_one_head_crf_search_encode_score_and_ladder_agree(d, tmp_path):
    """With no --head, crf-search, `score` and `ladder` all use the model card's default head: the encode
    event, `score` of the same file and a ladder rendition at the chosen CRF are the same number (same
    frames), and each names that head."""
    head = builtin_card()["default_head"]
    src = photo_pan(tmp_path / "pan.mkv")
    out = tmp_path / "auto.mkv"
    res = CliRunner().invoke(main, ["crf-search", str(src), "--target", 15, "--samples", 2,
                                    "--sample-duration", 0.5, "--frames", 3, "--max-probes", 2, "--preset",
                                    "ultrafast", "--encode", str(out), "--format", "ndjson", "-q"])
    events = [json.loads(x) for x in res.stdout.splitlines()]
    assert res.exit_code == 0, res.stderr
    assert {e["head"] for e in events} == {head}
    enc = events[-1]
    scored = CliRunner().invoke(main, ["score", str(out), "--frames", "6", "--format", "json"])
    record = json.loads(scored.stdout.splitlines()[0])
    ladder = CliRunner().invoke(main, ["ladder", str(src), "--heights", "90", "--crf", str(enc["crf"]),
                                       "--preset", "ultrafast", "--frames", "6", "--format", "json", "-o",
                                       str(tmp_path / "lad")])
    rung = json.loads(ladder.stdout)
    assert record["head"] == rung["head"] == head
    assert enc["score"] == pytest.approx(record["score"], abs=0.01)
    assert rung["renditions"][0]["score"] == pytest.approx(enc["score"], abs=0.01)
    assert rung["renditions"][0]["bytes"] == pytest.approx(enc["bytes"], rel=0.02)

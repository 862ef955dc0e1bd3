"""CRF search: sample placement, the probe logic on known curves, the loop, NDJSON events and bad input."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner
from encoding_helpers import StubScorer, fake_ffmpeg, leftovers, real_ffmpeg
from media import make_clip

from contrique_video.cli import main
from contrique_video.encoding.crf_search import (
    Probe,
    SearchSettings,
    choose,
    crf_search,
    next_crf,
)
from contrique_video.encoding.encode import EncodeSettings, encode, lossless_reel
from contrique_video.encoding.sampling import sample_spans
from contrique_video.errors import InputError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("crf") / "src.mp4", size=(160, 90), frames=48)


def line(crf: int, slope: float = -2.0, at0: float = 100.0) -> Probe:
    return Probe(crf, at0 + slope * crf, 1000 * (60 - crf), 8.0 * (60 - crf))


def test_sample_spans_are_centred_and_deterministic():
    assert sample_spans(10.0, 4, 1.0) == [(0.75, 1.0), (3.25, 1.0), (5.75, 1.0), (8.25, 1.0)]
    assert sample_spans(2.0, 1, 2.0) == [(0.0, 2.0)]
    with pytest.raises(InputError, match="duration is unknown"):
        sample_spans(None, 1, 1.0)
    with pytest.raises(InputError, match="at least 1 sample"):
        sample_spans(3.0, 0, 1.0)


def test_an_input_shorter_than_the_samples_is_used_whole(caplog):
    """ab-av1 does the same: the defaults (4 x 2 s) must work on a 4 s clip."""
    with caplog.at_level("INFO", logger="contrique_video"):
        assert sample_spans(4.0, 4, 2.0, "clip.mp4") == [(0.0, 4.0)]
        assert sample_spans(3.0, 4, 1.0, "clip.mp4") == [(0.0, 3.0)]
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "clip.mp4 is 4.00 s long, no longer than the 4 samples x 2 s requested: using the whole input"
    assert sample_spans(8.0, 4, 2.0) == [(0.0, 2.0), (2.0, 2.0), (4.0, 2.0), (6.0, 2.0)]  # exactly enough: 4 samples


def test_probes_close_the_bracket_on_a_known_line():
    probes = [line(30)]  # score 100 - 2 crf, target 50: the answer is CRF 25
    while (crf := next_crf(probes, 50, 10, 51, True)) is not None:
        probes.append(line(crf))
    assert [p.crf for p in probes] == [30, 10, 25, 26]  # missed at 30: the lower bound next, then interpolated
    result = choose(probes, 50, True, "libx264", duration=10.0)
    assert (result.crf, result.score, result.reached) == (25, 50.0, True)
    assert result.kbps == pytest.approx(8.0 * 35)
    assert result.predicted_bytes == round(8.0 * 35 * 1000 / 8 * 10)


def test_noisy_probes_are_made_monotone():
    probes = [Probe(20, 60, 3, 3), Probe(30, 45, 1, 1), Probe(25, 44, 2, 2)]  # 25 scored below 30: noise
    assert 20 < next_crf(probes, 50, 10, 51, True) < 25


def test_a_ladder_that_rises_with_the_crf_is_warned_about():
    """Issue 30: a grainy source through SVT-AV1 scored 27.6, 28.0, 29.5, 34.4, 36.2 from CRF 16 to 48 with the
    built-in model; the isotonic fit flattens such a ladder and the search drifts to high CRFs, so the result says
    so. A rise within the score's noise (1 point) is not warned about."""
    rising = [Probe(c, s, 1, 1) for c, s in ((16, 27.6), (24, 28.0), (32, 29.5), (40, 34.4), (48, 36.2))]
    result = choose(rising, 30, True, "libsvtav1", duration=10.0)
    assert len(result.warnings) == 1 and "CRF 16: 27.60, CRF 48: 36.20" in result.warnings[0]
    assert result.event()["warnings"] == result.warnings
    assert choose([Probe(20, 60, 3, 3), Probe(30, 45, 1, 1), Probe(25, 44, 2, 2)], 50, True, "libx264", 10.0).warnings == []
    lower = [Probe(20, 10.0, 3, 3), Probe(30, 7.5, 1, 1)]  # lower is better: CRF 30 better by 2.5
    assert "CRF 20: 10.00, CRF 30: 7.50" in choose(lower, 9, False, "libx264", 10.0).warnings[0]


def test_a_search_whose_scores_rise_with_the_crf_says_so(clip, tmp_path):
    """The warning reaches the result event of a real search (a stub whose score rises as the encode shrinks)."""

    class Smoothing(StubScorer):
        def score(self, path, sampling=None, on_frames=None):
            r = super().score(path, sampling, on_frames)
            return type(r)(100 - r.score, {"p5": 100 - r.score})

    events = []
    result = crf_search(clip, Smoothing(), "libx264", 50.0, search=SearchSettings(samples=2, sample_duration=0.5),
                        settings=EncodeSettings("ultrafast"), workdir=tmp_path, on_event=events.append)
    assert result.warnings and events[-1]["warnings"] == result.warnings
    assert "the score rose with the CRF" in result.warnings[0]


def test_lower_is_better_and_unreachable_targets():
    probes = [line(c, slope=2.0, at0=0.0) for c in (20, 30)]  # DMOS-like: 2 crf
    assert choose(probes, 50, False, "x", 1.0).crf == 25
    high = [line(c) for c in (10, 20)]  # best is 80 at CRF 10
    result = choose(high, 90, True, "x", 1.0)
    assert (result.crf, result.reached) == (10, False)
    assert next_crf(high, 90, 10, 51, True) is None  # CRF 10 is the bottom of the range: nothing left to try


def test_an_out_of_reach_target_is_known_in_two_probes():
    """The first probe misses, so the second is the CRF bound; if that misses too, the search stops."""
    for target, higher, probe in ((99, True, lambda c: line(c)), (0.5, False, lambda c: line(c, 2.0, 0.0))):
        probes = [probe(30)]
        while (crf := next_crf(probes, target, 10, 51, higher)) is not None:
            probes.append(probe(crf))
        assert [p.crf for p in probes] == [30, 10]
    easy = [line(30)]  # 40 at CRF 30, target 10: even the top of the range meets it
    while (crf := next_crf(easy, 10, 10, 40, True)) is not None:
        easy.append(line(crf))
    assert [p.crf for p in easy] == [30, 40]


def test_search_loop_brackets_the_target(clip, tmp_path):
    events = []
    stub = StubScorer()
    result = crf_search(clip, stub, "libx264", 50.0, search=SearchSettings(samples=2, sample_duration=0.5, max_probes=8),
                        settings=EncodeSettings("ultrafast"), workdir=tmp_path, on_event=events.append)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "samples" and kinds[-1] == "result" and set(kinds[1:-1]) == {"probe"}
    assert events[0]["frames"] == 24 and events[0]["spans"] == [[0.25, 0.5], [1.25, 0.5]]
    crfs = [e["crf"] for e in events if e["type"] == "probe"]
    assert len(set(crfs)) == len(crfs)
    assert result.reached and result.score >= 50.0
    above = [p for p in result.probes if p.crf <= result.crf and p.score >= 50]
    below = [p for p in result.probes if p.crf > result.crf and p.score < 50]
    assert above and below and min(p.crf for p in below) - result.crf <= 1  # bracket closed at one CRF
    assert leftovers(tmp_path) == []
    reel = lossless_reel(clip, tmp_path / "reel.mkv", [(0.25, 0.5), (1.25, 0.5)])  # the pick really scores ~ target
    assert stub.score(encode(reel.path, tmp_path / "e.mkv", "libx264", result.crf, preset="ultrafast").path).score >= 50


def cli(*args):
    return CliRunner().invoke(main, ["crf-search", *map(str, args)], catch_exceptions=False)


def test_search_with_default_samples_uses_a_short_input_whole(clip, tmp_path):
    """The 2 s clip is shorter than the default 4 samples x 2 s: the whole of it becomes the reel."""
    events = []
    crf_search(clip, StubScorer(), "libx264", 50.0, search=SearchSettings(max_probes=2),
               settings=EncodeSettings("ultrafast"), workdir=tmp_path, on_event=events.append)
    assert events[0]["spans"] == [[0.0, 2.0]] and events[0]["frames"] == 48


def test_cli_default_samples_on_a_short_input(clip, tmp_path, caplog):
    with caplog.at_level("INFO", logger="contrique_video"):
        res = cli(clip, "--target", 40, "--frames", 1, "--max-probes", 1, "--preset", "ultrafast", "--format",
                  "ndjson", "--workdir", tmp_path)
    events = [json.loads(x) for x in res.stdout.splitlines()]
    assert events[0]["type"] == "samples" and events[0]["spans"] == [[0.0, 2.0]]
    assert events[-1]["type"] == "result" and res.exit_code == (0 if events[-1]["reached"] else 1)
    assert "no longer than the 4 samples x 2 s requested: using the whole input" in caplog.text


def test_cli_json_lines_events_with_the_model(clip, tmp_path):
    res = cli(clip, "--target", 40, "--samples", 2, "--sample-duration", 0.5, "--frames", 2, "--max-probes", 2,
              "--preset", "ultrafast", "--format", "json", "--workdir", tmp_path, "-q")
    events = [json.loads(x) for x in res.stdout.splitlines()]
    assert [e["type"] for e in events] == ["samples", "probe", "probe", "result"]
    for probe in events[1:3]:
        assert set(probe) == {"type", "head", "crf", "score", "bytes", "kbps", "encode_seconds"}
        assert isinstance(probe["crf"], int) and probe["bytes"] > 0
    result = events[-1]
    assert {"encoder", "target", "crf", "score", "kbps", "predicted_bytes", "reached", "probes", "pool",
            "predicted_percent", "predicted_encode_seconds"} <= set(result)
    assert res.exit_code == (0 if result["reached"] else 1)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["--target", 50, "--encoder", "libnosuch"], "encoder libnosuch is not available in "),
])
def test_cli_bad_input_is_one_line(clip, args, message):
    res = cli(clip, *args)
    assert res.exit_code == 1
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_target_outside_the_heads_range_is_a_usage_error(clip):
    """Checked against the head crf-search scores with: the model card's default, as `score` uses."""
    from contrique_video.api import default_head

    res = cli(clip, "--target", 150)
    assert res.exit_code == 2
    assert f"Invalid value for '--target': 150 is outside the range 0..100 of head '{default_head()}' (MOS)" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_ffmpeg_failing_mid_way_keeps_probes_marked_partial(clip, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    flaky = fake_ffmpeg(tmp_path, fail_from_call=2)  # the second probe fails
    res = cli(clip, "--target", 40, "--samples", 2, "--sample-duration", 0.5, "--frames", 1, "--preset", "ultrafast",
              "--ffmpeg", flaky, "--format", "ndjson", "--workdir", work, "-q")
    events = [json.loads(x) for x in res.stdout.splitlines()]
    assert [e["type"] for e in events] == ["samples", "probe", "error"]
    assert events[-1]["partial"] is True and events[-1]["probes"] == 1
    assert res.exit_code == 1
    assert res.stderr.strip().endswith("simulated encoder crash") and len(res.stderr.strip().splitlines()) == 1
    assert leftovers(work) == []


def test_probes_never_score_the_first_frame_of_a_sample():
    from contrique_video.encoding.sampling import centred

    s = centred(4, 2.0)  # a reel of two 1 s samples at 24 fps: key frames 0 and 24
    selector = s.selector(2.0, 24.0)
    kept = [i for i in range(48) if selector.offer(i, i / 24, i % 24 == 0)]
    assert kept == [6, 18, 30, 42]  # targets 0.25, 0.75, 1.25 and 1.75 s


def test_progress_bar_counts_probes_with_an_eta(clip, tmp_path, monkeypatch):
    import contrique_video.cli.encoding as cli

    monkeypatch.setattr(cli, "open_scorer", lambda model: StubScorer())
    res = CliRunner().invoke(main, ["crf-search", str(clip), "--target", "50", "--samples", "2", "--sample-duration",
                                    "0.5", "--max-probes", "3", "--preset", "ultrafast", "--workdir", str(tmp_path)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "crf-search:" in res.stderr and "/3 [" in res.stderr and "probe/s]" in res.stderr
    assert "crf 30: score" in res.stderr  # the first probe (the middle of 10..51) on the bar
    assert res.stdout.startswith("libx264 crf ")


@pytest.mark.parametrize("crf", [30, 40])
def test_a_probe_predicts_the_size_of_the_full_encode(tmp_path, crf):
    """On content alike all through (testsrc2), the probe's bitrate (the jump at each join between samples
    counted as an inter frame, see joinless_bytes) is within 3% of the full encode's, and nearer to it than
    the reel encode's own bitrate, which pays for a new picture at every join."""
    src = tmp_path / "ts.mkv"
    subprocess.run([real_ffmpeg(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=s=320x180:r=24:d=6",
                    "-c:v", "ffv1", "-g", "1", str(src)], check=True)
    events = []
    crf_search(src, StubScorer(), "libx264", 0.0, on_event=events.append,
               search=SearchSettings(samples=3, sample_duration=1.0, min_crf=crf - 1, max_crf=crf, max_probes=1))
    probe = next(e for e in events if e["type"] == "probe")
    subprocess.run([real_ffmpeg(), "-y", "-loglevel", "error", "-i", str(src), "-c:v", "libx264", "-crf",
                    str(probe["crf"]), "-preset", "medium", "-pix_fmt", "yuv420p", str(tmp_path / "full.mkv")], check=True)
    full_kbps = (tmp_path / "full.mkv").stat().st_size * 8 / 6 / 1000
    reel_kbps = probe["bytes"] * 8 / 3 / 1000
    assert probe["kbps"] == pytest.approx(full_kbps, rel=0.03)
    assert abs(probe["kbps"] - full_kbps) < abs(reel_kbps - full_kbps)


def test_output_file_holds_the_events_json_prints(clip, tmp_path, monkeypatch):
    """-o/--output is crf-search's data file: the JSON Lines events, the same lines --format json prints
    (and the old --format ndjson still means json)."""
    import contrique_video.cli.encoding as cli

    monkeypatch.setattr(cli, "open_scorer", lambda model: StubScorer())
    out = tmp_path / "events.jsonl"
    res = CliRunner().invoke(main, ["-q", "crf-search", str(clip), "--target", "50", "--samples", "2",
                                    "--sample-duration", "0.5", "--max-probes", "2", "--preset", "ultrafast",
                                    "--workdir", str(tmp_path), "--format", "ndjson", "-o", str(out)],
                             catch_exceptions=False)
    assert res.exit_code in (0, 1), res.output
    assert out.read_text().splitlines() == res.stdout.splitlines()
    kinds = [json.loads(x)["type"] for x in out.read_text().splitlines()]
    assert kinds[0] == "samples" and kinds[-1] == "result" and "probe" in kinds

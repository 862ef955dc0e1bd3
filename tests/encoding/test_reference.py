"""``score --reference``: VMAF from libvmaf beside our score, equal to running libvmaf by hand on the pair,
in the records and the logs."""

from __future__ import annotations

import json
import stat
import subprocess

import pytest
from click.testing import CliRunner
from encoding_helpers import real_ffmpeg
from media import make_clip
from checkpoints import small_model_with_head

from contrique_video.cli import main
from contrique_video.encoding.encode import EncodeSettings, encode


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("reference")
    make_clip(d / "src.mp4", size=(192, 128), frames=20, content="moving")
    encode(d / "src.mp4", d / "enc.mp4", "libx264", 38, settings=EncodeSettings("ultrafast"))
    encode(d / "src.mp4", d / "small.mp4", "libx264", 30, height=64, settings=EncodeSettings("ultrafast"))
    small_model_with_head(d, head_seed=2)
    return d


def by_hand(distorted, reference, tmp_path, scale: str = "") -> dict:
    """libvmaf as a user runs it: one ffmpeg command, a JSON log."""
    log = tmp_path / "hand.json"
    graph = (f"[0:v]{scale}setpts=PTS-STARTPTS[d];[1:v]setpts=PTS-STARTPTS[r];"
             f"[d][r]libvmaf=model=version=vmaf_v0.6.1:log_fmt=json:log_path={log}")
    subprocess.run([real_ffmpeg(), "-nostdin", "-loglevel", "error", "-i", str(distorted), "-i", str(reference),
                    "-lavfi", graph, "-f", "null", "-"], check=True)
    return json.loads(log.read_text())


def score(d, *args):
    return CliRunner().invoke(main, ["-q", "score", "--weights", str(d / "r18.pt"), "--head", str(d / "head.json"),
                                     *map(str, args)], catch_exceptions=False)


def test_vmaf_matches_libvmaf_by_hand_in_record_and_log(d, tmp_path):
    hand = by_hand(d / "enc.mp4", d / "src.mp4", tmp_path)
    per_frame = {f["frameNum"]: f["metrics"]["vmaf"] for f in hand["frames"]}
    res = score(d, d / "enc.mp4", "--reference", d / "src.mp4", "--every", 4, "--format", "json",
                "--log", tmp_path / "log.json")
    assert res.exit_code == 0, res.stderr
    record = json.loads(res.stdout)
    assert record["reference"] == str(d / "src.mp4") and record["vmaf_model"] == "vmaf_v0.6.1"
    assert record["vmaf_all_frames"] == pytest.approx(hand["pooled_metrics"]["vmaf"]["mean"], abs=1e-6)
    scored = [0, 4, 8, 12, 16]
    assert record["vmaf"] == pytest.approx(sum(per_frame[i] for i in scored) / len(scored), abs=1e-6)
    assert record["vmaf_pooled"]["min"] == pytest.approx(min(per_frame[i] for i in scored), abs=1e-6)
    assert 0 < record["vmaf"] < 100
    log = json.loads((tmp_path / "log.json").read_text())
    assert [f["frameNum"] for f in log["frames"]] == scored
    assert [f["metrics"]["vmaf"] for f in log["frames"]] == pytest.approx([per_frame[i] for i in scored], abs=1e-6)
    assert set(log["frames"][0]["metrics"]) == {"contrique", "vmaf"}
    assert log["pooled_metrics"]["vmaf"]["mean"] == pytest.approx(record["vmaf"])
    assert log["aggregate_metrics"]["vmaf_all_frames"] == pytest.approx(record["vmaf_all_frames"])


def test_a_smaller_rendition_is_scaled_to_the_reference_first(d, tmp_path):
    hand = by_hand(d / "small.mp4", d / "src.mp4", tmp_path, scale="scale=192:128:flags=bicubic,")
    res = score(d, d / "small.mp4", "--reference", d / "src.mp4", "--frames", 2, "--format", "json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["vmaf_all_frames"] == pytest.approx(hand["pooled_metrics"]["vmaf"]["mean"], abs=1e-6)


def test_an_ffmpeg_without_libvmaf_is_one_line(d, tmp_path):
    fake = tmp_path / "ffmpeg-novmaf"
    fake.write_text("#!/bin/sh\necho \"[AVFilterGraph @ 0x1] No such filter: 'libvmaf'\" >&2\nexit 8\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    res = score(d, d / "enc.mp4", "--reference", d / "src.mp4", "--frames", 1, "--ffmpeg", fake)
    assert res.exit_code == 1
    assert "has no libvmaf; pass --ffmpeg PATH" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--vmaf-model", "vmaf_4k_v0.6.1"], "--ffmpeg and --vmaf-model are for --reference REF"),
    (["--reference", "REF", "--engine", "local"], "--log, --report and --reference run locally"),
])
def test_usage_errors(d, args, message):
    args = [d / "src.mp4" if a == "REF" else a for a in args]
    res = score(d, d / "enc.mp4", *args)
    assert res.exit_code == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_disagreements_rank_the_frames_where_the_metrics_part():
    from types import SimpleNamespace

    import pandas as pd

    from contrique_video.runs.report import disagreements

    frames = pd.DataFrame({"frame": [0, 1, 2, 3], "pts_time": [0.0, 0.1, 0.2, 0.3], "score": [10.0, 20.0, 30.0, 40.0],
                           "vmaf": [50.0, 60.0, 70.0, 5.0]})  # frame 3: best for us, worst for VMAF
    table = disagreements([SimpleNamespace(file="a.mp4", frames=frames, higher_is_better=True)])
    assert list(table["frame"][:1]) == [3]
    assert table.loc[0, "gap"] == pytest.approx(100 - 25)
    assert list(table["gap"].abs()) == sorted(table["gap"].abs(), reverse=True)


def test_cli_compare_writes_png_and_table(d, tmp_path):
    import csv

    out = tmp_path / "cmp.png"
    res = score(d, d / "enc.mp4", d / "small.mp4", "--reference", d / "src.mp4", "--every", 5, "--compare", out)
    assert res.exit_code == 0, res.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader((tmp_path / "cmp.csv").read_text().splitlines()))
    assert len(rows) == 8 and {r["file"] for r in rows} == {str(d / "enc.mp4"), str(d / "small.mp4")}
    gaps = [abs(float(r["gap"])) for r in rows]
    assert gaps == sorted(gaps, reverse=True)
    res = score(d, d / "enc.mp4", "--compare", out)
    assert res.exit_code == 2 and "--compare needs --reference REF" in res.stderr


def test_crf_search_and_ladder_measure_vmaf_too(d, tmp_path):
    from encoding_helpers import StubScorer

    from contrique_video.encoding.ladder import Grid, build_ladder
    from contrique_video.encoding.reference import vmaf_mean

    out = tmp_path / "auto.mkv"
    res = CliRunner().invoke(main, ["crf-search", str(d / "src.mp4"), "--weights", str(d / "r18.pt"), "--head",
                                    str(d / "head.json"), "--target", "30", "--samples", "1", "--sample-duration",
                                    "0.5", "--frames", "1", "--max-probes", "2", "--preset", "ultrafast", "--vmaf",
                                    "--encode", str(out), "--format", "ndjson", "-q"], catch_exceptions=False)
    events = [json.loads(x) for x in res.stdout.splitlines()]
    assert res.exit_code == 0, res.stderr
    probes = [e for e in events if e["type"] == "probe"]
    assert probes and all(0 < p["vmaf"] <= 100 for p in probes)
    assert events[-1]["type"] == "encode"
    assert events[-1]["vmaf"] == pytest.approx(vmaf_mean(out, d / "src.mp4"), abs=1e-6)

    ladder = build_ladder(d / "src.mp4", StubScorer(), "libx264", Grid([128, 64], [20, 45], frames=1),
                          settings=EncodeSettings("ultrafast"), workdir=tmp_path, vmaf=True)
    table = ladder.table().set_index(["height", "crf"])
    assert table["vmaf"].notna().all()
    assert table.loc[(128, 20), "vmaf"] > table.loc[(128, 45), "vmaf"]
    assert table.loc[(128, 20), "vmaf"] > table.loc[(64, 20), "vmaf"]


def test_vmaf_model_option_and_ladder_cli_vmaf_column(d, tmp_path):
    import csv

    res = score(d, d / "enc.mp4", "--reference", d / "src.mp4", "--frames", 1, "--vmaf-model", "vmaf_v0.6.1neg",
                "--format", "json")
    assert res.exit_code == 0, res.stderr
    record = json.loads(res.stdout)
    hand = by_hand(d / "enc.mp4", d / "src.mp4", tmp_path)
    assert record["vmaf_model"] == "vmaf_v0.6.1neg"
    assert record["vmaf_all_frames"] <= hand["pooled_metrics"]["vmaf"]["mean"]  # NEG: no credit for enhancement

    res = CliRunner().invoke(main, ["ladder", str(d / "src.mp4"), "--weights", str(d / "r18.pt"), "--head",
                                    str(d / "head.json"), "--heights", "128", "--crf", "24,40", "--frames", "1",
                                    "--preset", "ultrafast", "--vmaf", "--out", str(tmp_path / "lad"), "-q"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader((tmp_path / "lad" / "ladder.csv").read_text().splitlines()))
    assert [int(r["crf"]) for r in rows] == [24, 40] and float(rows[0]["vmaf"]) > float(rows[1]["vmaf"])
    assert "vmaf" in res.stdout.splitlines()[0]


def test_crf_search_reference_cuts_ref_at_the_samples_and_measures_against_it(d, tmp_path):
    from encoding_helpers import StubScorer

    from contrique_video.encoding.crf_search import SearchSettings, crf_search, encode_chosen
    from contrique_video.encoding.encode import lossless_reel

    events, settings = [], EncodeSettings("ultrafast")
    result = crf_search(d / "enc.mp4", StubScorer(), "libx264", 50.0, settings=settings,
                        search=SearchSettings(samples=1, sample_duration=0.5, max_probes=1, min_crf=20, max_crf=40), workdir=tmp_path, on_event=events.append,
                        reference=d / "src.mp4")
    samples, probe = events[0], events[1]
    assert samples["reference"] == str(d / "src.mp4") and probe["crf"] == 30
    spans = [tuple(s) for s in samples["spans"]]
    reel = lossless_reel(d / "enc.mp4", tmp_path / "reel.mkv", spans)
    again = encode(reel.path, tmp_path / "probe.mkv", "libx264", 30, settings=settings)
    assert again.bytes == probe["bytes"]  # the same probe encode, made again by hand
    ref_reel = lossless_reel(d / "src.mp4", tmp_path / "ref.mkv", spans)
    assert probe["vmaf"] == pytest.approx(by_hand(again.path, ref_reel.path, tmp_path)["pooled_metrics"]["vmaf"]["mean"],
                                          abs=1e-6)
    against_input = by_hand(again.path, reel.path, tmp_path)["pooled_metrics"]["vmaf"]["mean"]
    assert probe["vmaf"] < against_input  # the master shows the loss INPUT already had

    event = encode_chosen(d / "enc.mp4", tmp_path / "full.mp4", result, StubScorer(), frames=2, settings=settings,
                          reference=d / "src.mp4")
    hand = by_hand(tmp_path / "full.mp4", d / "src.mp4", tmp_path)
    assert event["vmaf"] == pytest.approx(hand["pooled_metrics"]["vmaf"]["mean"], abs=1e-6)


def test_ladder_reference_scales_each_rendition_to_ref(d, tmp_path):
    from encoding_helpers import StubScorer

    from contrique_video.encoding.ladder import Grid, Hooks, build_ladder

    hand = []
    ladder = build_ladder(d / "enc.mp4", StubScorer(), "libx264", Grid([64], [30], display=(96, 64), frames=1),
                          settings=EncodeSettings("ultrafast"), workdir=tmp_path, reference=d / "src.mp4",
                          hooks=Hooks(inspect=lambda h, c, f: hand.append(
                              by_hand(f, d / "src.mp4", tmp_path, scale="scale=192:128:flags=bicubic,"))))
    assert ladder.reference == str(d / "src.mp4") and ladder.record()["reference"] == str(d / "src.mp4")
    assert ladder.renditions[0].vmaf == pytest.approx(hand[0]["pooled_metrics"]["vmaf"]["mean"], abs=1e-6)


def test_crf_search_and_ladder_cli_reference(d, tmp_path):
    out = tmp_path / "auto.mp4"
    res = CliRunner().invoke(main, ["crf-search", str(d / "enc.mp4"), "--weights", str(d / "r18.pt"), "--head",
                                    str(d / "head.json"), "--target", "30", "--samples", "1", "--sample-duration",
                                    "0.5", "--frames", "1", "--max-probes", "1", "--preset", "ultrafast",
                                    "--reference", str(d / "src.mp4"), "--encode", str(out), "--format", "ndjson",
                                    "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    events = [json.loads(x) for x in res.stdout.splitlines()]
    assert events[0]["reference"] == str(d / "src.mp4") and "vmaf" in events[1]
    hand = by_hand(out, d / "src.mp4", tmp_path)
    assert events[-1]["type"] == "encode"
    assert events[-1]["vmaf"] == pytest.approx(hand["pooled_metrics"]["vmaf"]["mean"], abs=1e-6)

    res = CliRunner().invoke(main, ["ladder", str(d / "enc.mp4"), "--weights", str(d / "r18.pt"), "--head",
                                    str(d / "head.json"), "--heights", "128", "--crf", "30", "--frames", "1",
                                    "--preset", "ultrafast", "--reference", str(d / "src.mp4"), "--out",
                                    str(tmp_path / "lad"), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    record = json.loads((tmp_path / "lad" / "ladder.json").read_text())
    assert record["reference"] == str(d / "src.mp4") and 0 < record["renditions"][0]["vmaf"] <= 100


@pytest.mark.parametrize("command", ["crf-search", "ladder"])
def test_a_missing_reference_is_a_usage_error(d, command):
    res = CliRunner().invoke(main, [command, str(d / "enc.mp4"), "--reference", str(d / "nosuch.mp4"),
                                    *(["--target", "30"] if command == "crf-search" else [])])
    assert res.exit_code == 2 and "Invalid value for '--reference'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1

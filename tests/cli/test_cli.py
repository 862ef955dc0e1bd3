"""End to end through the command line, with a random official-format checkpoint (ResNet-18 to stay fast
where the layout does not matter) and heads written by the test."""

from __future__ import annotations

import csv
import io
import json
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from media import make_audio, make_clip, make_image, make_text
from PIL import Image
from sklearn.linear_model import Ridge
from checkpoints import random_official_checkpoint, reference_features

from contrique_video.cli import main
from contrique_video.models.head import LinearHead


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    random_official_checkpoint(d / "r18.pt", arch="resnet18")
    rng = np.random.default_rng(0)
    LinearHead(weights=rng.normal(size=1024) * 10, intercept=50.0, name="testhead", features="weights:r18.pt",
               trained_on="random", scale="MOS", range=(0, 100), higher_is_better=True).save(d / "head.json")
    make_clip(d / "clip.mp4", size=(96, 64), frames=12, fps=24)
    make_image(d / "still.png", size=(96, 80))
    return d


def run(*args, input=None):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
    return result


def test_score_json_and_per_frame_csv(setup):
    d = setup
    res = run("-q", "score", d / "clip.mp4", d / "still.png", "--weights", d / "r18.pt", "--head", d / "head.json",
              "--format", "json", "--all", "--csv", d / "frames.csv")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(d / "clip.mp4"), str(d / "still.png")]
    for key in ("file", "score", "pooled", "frames_scored", "model", "head"):
        assert key in records[0]
    assert records[0]["frames_scored"] == 12 and records[1]["frames_scored"] == 1
    frames = pd.read_csv(d / "frames.csv")
    assert list(frames.columns) == ["file", "frame", "pts_time", "score"]
    clip = frames[frames["file"] == str(d / "clip.mp4")]
    assert list(clip["frame"]) == list(range(12))
    # With a linear head, the video score is the mean of the frame scores.
    assert records[0]["score"] == pytest.approx(clip["score"].mean(), abs=1e-3)
    assert records[0]["pooled"]["min"] == pytest.approx(clip["score"].min(), abs=1e-4)
    assert not (d / "frames.csv.partial").exists()


def test_score_is_deterministic_and_table_goes_to_stdout(setup):
    d = setup
    args = ("score", d / "clip.mp4", "--weights", d / "r18.pt", "--head", d / "head.json", "--frames", "4")
    a, b = run("-q", *args), run("-q", *args)
    assert a.exit_code == 0 and a.stdout == b.stdout
    assert "testhead" in a.stdout and "clip.mp4" in a.stdout
    assert a.stderr == ""


def test_csv_summary_format(setup):
    d = setup
    res = run("-q", "score", d / "clip.mp4", d / "still.png", "--weights", d / "r18.pt", "--head", d / "head.json",
              "--format", "csv")
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("file,score,frames_scored,mean,harmonic_mean,min,max,median,p5,std")
    assert len(lines) == 3


def test_features_equal_reference_path(setup, tmp_path):
    """`features IMG --weights OFFICIAL.tar` equals the official inference path to 1e-5 (ResNet-50 layout)."""
    ckpt = tmp_path / "CONTRIQUE_checkpoint25.tar"
    state = random_official_checkpoint(ckpt, seed=3)
    rgb = (np.random.default_rng(5).random((72, 90, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img.png")
    res = run("-q", "features", tmp_path / "img.png", "--weights", ckpt, "--output", tmp_path / "f.npy")
    assert res.exit_code == 0, res.output
    feats = np.load(tmp_path / "f.npy")
    assert feats.shape == (1, 4096) and feats.dtype == np.float32
    assert np.max(np.abs(feats[0] - reference_features(state, Image.fromarray(rgb)))) <= 1e-5


def test_features_npz_has_frame_and_time(setup, tmp_path):
    d = setup
    res = run("-q", "features", d / "clip.mp4", "--weights", d / "r18.pt", "--every", "4", "--output", tmp_path / "f.npz")
    assert res.exit_code == 0, res.output
    z = np.load(tmp_path / "f.npz")
    assert z["features"].shape == (3, 1024)
    assert list(z["frame"]) == [0, 4, 8]
    assert z["pts_time"][1] == pytest.approx(4 / 24, abs=1e-3)


def test_import_head_then_score(setup, tmp_path):
    X = np.random.default_rng(1).normal(size=(40, 1024))
    ridge = Ridge(alpha=1.0).fit(X, X[:, 0] * 5 + 40)
    (tmp_path / "CLIVE.save").write_bytes(pickle.dumps(ridge))
    res = run("import-head", tmp_path / "CLIVE.save", "--output", tmp_path / "clive.json")
    assert res.exit_code == 0, res.output
    head = json.loads((tmp_path / "clive.json").read_text())
    assert head["higher_is_better"] is True and head["scale"] == "MOS"
    assert head["intercept"] == pytest.approx(float(ridge.intercept_))


def test_stdin_stream(setup):
    """`ffmpeg -i in.mov -c:v copy -f nut - | contrique-video score -` (an H.264 stream)"""
    d = setup
    src = make_clip(d / "pipe.nut", size=(96, 64), frames=6, fps=24)
    cmd = [sys.executable, "-m", "contrique_video", "-q", "score", "-", "--weights", str(d / "r18.pt"), "--head",
           str(d / "head.json"), "--format", "json", "--all"]
    proc = subprocess.run(cmd, input=src.read_bytes(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    record = json.loads(proc.stdout)
    assert record["file"] == "-" and record["frames_scored"] >= 6
    assert record["warnings"] == [] and proc.stderr == b""  # H.264 in NUT: nothing to warn about


def test_stdin_mpeg4_nut_warns_in_one_line(setup):
    """What `ffmpeg -i X -f nut -` sends without -c:v: scored, with one line naming the flag that avoids it."""
    d = setup
    src = make_clip(d / "default.nut", size=(96, 64), frames=6, fps=24, codec="mpeg4")
    cmd = [sys.executable, "-m", "contrique_video", "-q", "score", "-", "--weights", str(d / "r18.pt"), "--head",
           str(d / "head.json"), "--format", "json", "--all"]
    proc = subprocess.run(cmd, input=src.read_bytes(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    record = json.loads(proc.stdout)
    err = proc.stderr.decode().splitlines()
    assert len(err) == 1 and err[0].startswith("contrique-video: stdin: the piped stream is mpeg4 in nut")
    assert "-c:v rawvideo" in err[0]
    assert record["warnings"] == [err[0].removeprefix("contrique-video: stdin: ")]


def test_damaged_and_hdr_inputs_are_scored_with_one_warning_each(setup, tmp_path):
    """A truncated MKV and a PQ clip: exit 0, one stderr line each, and the same words in the record."""
    d = setup
    whole = make_clip(tmp_path / "whole.mkv", frames=24)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    pq = make_clip(tmp_path / "pq.mkv", frames=3, pix_fmt="yuv420p10le", colorspace="bt2020", transfer="pq")
    cmd = [sys.executable, "-m", "contrique_video", "-q", "score", str(d / "clip.mp4"), str(cut), str(pq),
           "--weights", str(d / "r18.pt"), "--head", str(d / "head.json"), "--format", "json", "--frames", "4"]
    proc = subprocess.run(cmd, capture_output=True, timeout=120, text=True)
    assert proc.returncode == 0, proc.stderr
    clean, damaged, hdr = [json.loads(x) for x in proc.stdout.splitlines()]
    assert clean["warnings"] == [] and clean["hdr"] is None
    assert 0 < damaged["frames_scored"] and damaged["hdr"] is None and len(damaged["warnings"]) == 1
    assert damaged["warnings"][0].startswith("damaged or truncated: the video decodes to")
    assert hdr["hdr"] == "pq" and len(hdr["warnings"]) == 1 and hdr["warnings"][0].startswith("HDR (PQ)")
    assert proc.stderr.splitlines() == [f"contrique-video: {cut}: {damaged['warnings'][0]}",
                                        f"contrique-video: {pq}: {hdr['warnings'][0]}"]


def test_csv_summary_carries_hdr_and_warnings(setup, tmp_path):
    d = setup
    pq = make_clip(tmp_path / "hlg.mkv", frames=2, pix_fmt="yuv420p10le", colorspace="bt2020", transfer="hlg")
    res = run("-q", "score", d / "clip.mp4", pq, "--weights", d / "r18.pt", "--head", d / "head.json", "--format",
              "csv", "--frames", "2")
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["hdr"] for r in rows] == ["", "hlg"]
    assert rows[0]["warnings"] == "" and rows[1]["warnings"].startswith("HDR (HLG) video is scored as SDR")


# ------------------------------------------------------------------ bad input: one line, non-zero exit
def one_line_error(res, expect: str, code: int = 1):
    assert res.exit_code == code, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and expect in err[0], res.stderr
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: d, "directory"),
        (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "empty"),
        (lambda d: make_text(d / "notes.mp4"), ""),
        (lambda d: make_audio(d / "audio.wav"), "no video stream"),
    ],
)
def test_bad_media(setup, tmp_path, make, expect):
    d = setup
    path = make(tmp_path)
    res = run("-q", "score", path, "--weights", d / "r18.pt", "--head", d / "head.json")
    one_line_error(res, expect)


def test_one_bad_input_does_not_lose_the_others(setup, tmp_path):
    d = setup
    res = run("-q", "score", tmp_path / "missing.mp4", d / "clip.mp4", "--weights", d / "r18.pt", "--head",
              d / "head.json", "--format", "json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["file"] == str(d / "clip.mp4")
    assert "missing.mp4" in res.stderr


def test_bad_options_are_usage_errors(setup):
    d = setup
    res = run("score", d / "clip.mp4", "--weights", d / "r18.pt", "--format", "xml")
    assert res.exit_code == 2 and "xml" in res.output
    res = run("score", d / "clip.mp4", "--weights", d / "r18.pt", "--fps", "2", "--frames", "3")
    assert res.exit_code == 2 and "one sampling mode" in res.output
    res = run("-q", "score", d / "clip.mp4", "--weights", d / "r18.pt", "--head", d / "head.json", "--fps", "-1")
    one_line_error(res, "'--fps'", code=2)


def test_bad_checkpoint_and_head(setup, tmp_path):
    d = setup
    state = torch.load(d / "r18.pt", weights_only=True)
    state["encoder.0.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pt")
    one_line_error(run("-q", "score", d / "clip.mp4", "--weights", tmp_path / "bad.pt", "--head", d / "head.json"),
                   "do not match")
    LinearHead(weights=np.ones(4096), intercept=0.0, name="big", features="weights:r18.pt", trained_on="x",
               scale="MOS", range=(0, 100), higher_is_better=True).save(tmp_path / "big.json")
    one_line_error(run("-q", "score", d / "clip.mp4", "--weights", d / "r18.pt", "--head", tmp_path / "big.json"),
                   "expects 4096 features")
    (tmp_path / "evil.save").write_bytes(pickle.dumps({"a": 1}))
    one_line_error(run("import-head", tmp_path / "evil.save", "--output", tmp_path / "evil.json"), "")
    assert not (tmp_path / "evil.json").exists()


def test_no_head_for_custom_weights_says_how(setup):
    d = setup
    one_line_error(run("-q", "score", d / "clip.mp4", "--weights", d / "r18.pt"), "--head")


def test_output_never_overwrites_input(setup):
    d = setup
    res = run("-q", "score", d / "clip.mp4", "--weights", d / "r18.pt", "--head", d / "head.json", "--csv",
              d / "clip.mp4")
    one_line_error(res, "refusing")


def test_info_lists_environment():
    res = run("info")
    assert res.exit_code == 0
    for key in ("torch", "pyav", "decoders", "backends", "cuda", "built-in model"):
        assert key in res.stdout

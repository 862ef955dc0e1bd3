"""Scoring on a Dask cluster (issue #7): a loopback LocalCluster of 2 single-threaded worker processes gives the
same records as local runs; failures are records; --resume and --parquet; an unreachable scheduler is one line;
a worker killed mid-run loses no finished record."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pandas as pd
import pytest
from click.testing import CliRunner
from media import make_clip, make_text
from checkpoints import small_model_with_head

distributed = pytest.importorskip("distributed", reason="needs Dask: pip install 'contrique-video[dask]'")

from contrique_video import ScorerSettings, score_many  # noqa: E402
from contrique_video.api import Scorer  # noqa: E402
from contrique_video.cli import main  # noqa: E402
from contrique_video.decode.sampler import Sampling  # noqa: E402
from contrique_video.runs import dask as cvd  # noqa: E402
from contrique_video.runs.records import COLUMNS, Outcome  # noqa: E402

SIZES = [(96, 64), (128, 96), (64, 64), (112, 80)]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """12 small clips of different sizes and lengths (so scores differ), and one file that is not media."""
    d = tmp_path_factory.mktemp("dist")
    small_model_with_head(d, head_seed=1)
    (d / "media").mkdir()
    for i in range(12):
        make_clip(d / "media" / f"clip{i:02d}.mp4", size=SIZES[i % 4], frames=4 + i % 3, content="moving")
    make_text(d / "media" / "clip05x.mp4")  # sorts among the clips
    return d


@pytest.fixture(scope="module")
def cluster():
    """An existing cluster, as users have: 2 worker processes, 1 thread each, on loopback only."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR) as c:
        yield c.scheduler_address


def model_args(d):
    return ["--weights", str(d / "r18.pt"), "--head", str(d / "head.json"), "--frames", "2"]


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_workers_inherit_the_test_backend(cluster):
    with distributed.Client(cluster) as client:
        assert set(client.run(lambda: os.environ.get("CONTRIQUE_VIDEO_BACKEND")).values()) == {"torch"}


def test_same_records_as_local_scorer(media, cluster):
    d = media
    paths = sorted(str(p) for p in (d / "media").iterdir())
    options = {"weights": str(d / "r18.pt"), "head": str(d / "head.json")}
    outcomes = sorted(score_many(paths, scorer=ScorerSettings(**options), executor=cluster, sampling=Sampling("frames", 2)),
                      key=lambda o: o.index)
    got = [o.record() for o in outcomes]
    assert [r["file"] for r in got] == paths
    scorer = Scorer(**options, threads=1)
    for path, rec in zip(paths, got):
        try:
            want = scorer.score(path, sampling=Sampling("frames", 2)).record()
        except Exception as exc:  # the broken file: the same message as a local run's failure record
            assert rec == {"file": path, "error": str(exc)}
            continue
        assert rec["score"] == pytest.approx(want["score"], abs=1e-6)
        for key, value in want["pooled"].items():
            assert rec["pooled"][key] == pytest.approx(value, abs=1e-6)
        assert {k: v for k, v in rec.items() if k not in ("score", "pooled")} == \
               {k: v for k, v in want.items() if k not in ("score", "pooled")}
    assert len({r["score"] for r in got if "score" in r}) > 1  # the clips really differ


def test_cli_manifest_resume_and_parquet(media, cluster, tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    d = media
    monkeypatch.chdir(d)  # relative names in records, as given
    names = sorted(f"media/{p.name}" for p in (d / "media").iterdir())
    pd.DataFrame({"file": names[:5]}).to_csv(tmp_path / "first.csv", index=False)
    pd.DataFrame({"path": names}).to_parquet(tmp_path / "all.parquet")
    out, table = tmp_path / "out.jsonl", tmp_path / "scores.parquet"
    base = ["-q", "score", *model_args(d), "--engine", cluster, "--format", "json", "--output", str(out)]
    res = CliRunner().invoke(main, [*base, "--manifest", str(tmp_path / "first.csv")])
    assert res.exit_code == 0, res.output
    first = records(out)
    assert sorted(r["file"] for r in first) == names[:5] and all("score" in r for r in first)
    assert len(res.stdout.splitlines()) == 5

    res = CliRunner().invoke(main, [*base, "--manifest", str(tmp_path / "all.parquet"), "--resume",
                                    "--parquet", str(table)])
    assert res.exit_code == 1  # the broken file
    final = records(out)
    assert final[:5] == first and sorted(r["file"] for r in final) == names  # nothing rescored
    assert res.stderr.strip().splitlines() == ["contrique-video: error: media/clip05x.mp4: not a video or image "
                                               "FFmpeg can read (Invalid data found when processing input)"]
    frame = pd.read_parquet(table)
    assert list(frame.columns) == COLUMNS and sorted(frame["file"]) == names
    assert frame["error"].notna().sum() == 1 and frame["score"].notna().sum() == len(names) - 1
    by_file = {r["file"]: r for r in final}
    for row in frame.itertuples():
        if "score" in by_file[row.file]:
            assert row.score == by_file[row.file]["score"] and row.p5 == by_file[row.file]["pooled"]["p5"]


def test_cli_timeout_is_a_failure_and_frames_csv(media, cluster, tmp_path):
    d = media
    clips = [str(d / "media" / "clip00.mp4"), str(d / "media" / "clip01.mp4")]
    res = CliRunner().invoke(main, ["-q", "score", clips[0], *model_args(d), "--engine", cluster,
                                    "--timeout", "0.000001"])
    assert res.exit_code == 1 and f"{clips[0]}: timed out after 1e-06 s (--timeout)" in res.stderr
    res = CliRunner().invoke(main, ["-q", "score", *clips, *model_args(d), "--engine", cluster,
                                    "--csv", str(tmp_path / "frames.csv")])
    assert res.exit_code == 0, res.output
    table = [line.split()[0].lstrip("\u2026") for line in res.stdout.splitlines()[1:3]]  # long paths cut from the left
    assert [c.endswith(t) for c, t in zip(clips, table)] == [True, True]  # the table is in input order
    frames = pd.read_csv(tmp_path / "frames.csv")
    assert list(frames.columns) == ["file", "frame", "pts_time", "score"] and sorted(set(frames["file"])) == clips
    assert len(frames) == 4


def test_a_head_that_does_not_load_ends_the_run_in_one_line(media, cluster, tmp_path):
    d = media
    res = CliRunner().invoke(main, ["-q", "score", str(d / "media" / "clip00.mp4"), "--weights", str(d / "r18.pt"),
                                    "--head", str(tmp_path / "missing.json"), "--engine", cluster])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.json" in lines[0], res.stderr


def test_unreachable_scheduler_is_one_line(media, monkeypatch, tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(cvd, "CONNECT_TIMEOUT", 1.0)
    clip = str(media / "media" / "clip00.mp4")
    res = CliRunner().invoke(main, ["-q", "score", clip, *model_args(media), "--engine", f"tcp://127.0.0.1:{port}",
                                    "--output", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1" in lines[0], res.stderr
    res = CliRunner().invoke(main, ["-q", "score", "-", *model_args(media), "--engine", "local"])
    assert res.exit_code == 2 and "stdin" in res.stderr


def test_killed_worker_loses_no_finished_record(media, tmp_path):
    """`--engine local` in its own process; one worker process is SIGKILLed once a record is on disk."""
    psutil = pytest.importorskip("psutil")
    d = media
    out = tmp_path / "run.jsonl"
    cmd = [sys.executable, "-m", "contrique_video", "-q", "score", str(d / "media"), *model_args(d),
           "--format", "json", "--output", str(out), "--engine", "local", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and (not out.exists() or len(records(out)) < 1):
            time.sleep(0.05)
        before = records(out)
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline())]
        killed = proc.poll() is None and len(before) < 13 and bool(workers)
        if killed:
            os.kill(workers[0].pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    final = records(out)
    assert proc.returncode == 1, err.decode()  # the broken file, and nothing else
    assert killed, "the run ended before a worker could be killed"
    assert final[: len(before)] == before  # finished records kept as they were
    assert sorted(r["file"] for r in final) == sorted(str(p) for p in (d / "media").iterdir())
    assert [r["file"] for r in final if "error" in r] == [str(d / "media" / "clip05x.mp4")]


def test_ctrl_c_on_an_engine_keeps_the_table_and_plot_of_finished_inputs(media, tmp_path, monkeypatch):
    """The cluster is replaced by local scoring that is interrupted after the first result."""
    d = media
    clips = [str(d / "media" / f"clip0{i}.mp4") for i in range(3)]

    def interrupted(self, inputs, *, sampling, **kwargs):
        scorer = replace(self.settings, device="cpu").scorer()
        index, name = inputs[0]
        yield Outcome(index, name, scorer.score(name, sampling=sampling))
        raise KeyboardInterrupt

    monkeypatch.setattr(cvd.DaskExecutor, "run", interrupted)
    res = CliRunner().invoke(main, ["-q", "score", *clips, *model_args(d), "--engine", "local",
                                    "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 130, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["file", "score"] and lines[1].split()[0].endswith("clip00.mp4")
    assert lines[2].startswith("score: predicted MOS") and len(lines) == 4
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert res.stderr.strip() == "contrique-video: error: interrupted: the 1 inputs scored before it are kept"

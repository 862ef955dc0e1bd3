"""Batch runs: folders and globs, failures as records, --output synced per input, SIGTERM and --resume,
--timeout, --max-pixels, awkward file names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from media import make_clip, make_text
from checkpoints import interrupt_on, small_model_with_head

from contrique_video.cli import main


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    small_model_with_head(d, head_seed=0)
    (d / "media").mkdir()
    for i in range(16):
        if i % 5 == 4:
            make_text(d / "media" / f"clip{i:02d}.mp4")  # broken: not media
        else:
            make_clip(d / "media" / f"clip{i:02d}.mp4", size=(96, 64), frames=6, content="moving")
    return d


def model_args(d):
    return ["--weights", str(d / "r18.pt"), "--head", str(d / "head.json"), "--frames", "2"]


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_scores_good_files_and_records_failures(batch, tmp_path):
    d = batch
    res = CliRunner().invoke(main, ["-q", "score", str(d / "media"), *model_args(d), "--format", "json",
                                    "--output", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 1
    out = records(tmp_path / "out.jsonl")
    assert len(out) == 16 and len({r["file"] for r in out}) == 16
    failed = [r for r in out if "error" in r]
    assert len(failed) == 3 and all("clip" in r["file"] and r["error"] for r in failed)
    assert len(res.stdout.splitlines()) == 13  # only scored inputs go to stdout
    assert len(res.stderr.strip().splitlines()) == 3


def test_csv_output_and_glob(batch, tmp_path):
    d = batch
    res = CliRunner().invoke(main, ["-q", "score", str(d / "media" / "clip0[0-3].mp4"), *model_args(d),
                                    "--output", str(tmp_path / "out.csv")])
    assert res.exit_code == 0, res.output
    import pandas as pd

    table = pd.read_csv(tmp_path / "out.csv")
    assert list(table["file"]) == [str(d / "media" / f"clip0{i}.mp4") for i in range(4)]
    assert table["error"].isna().all() and table["score"].notna().all()


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_keeps_finished_results_and_resume_completes(batch, tmp_path, signum, code):
    # The fifth input is a named pipe nobody writes to, so the run waits inside FFmpeg's open (where PyAV
    # swallows what a signal handler raises) with exactly four inputs finished, however fast the machine.
    d = batch
    waiting = tmp_path / "waiting.mp4"
    os.mkfifo(waiting)
    clips = sorted(str(p) for p in (d / "media").glob("*.mp4") if int(p.stem[-2:]) % 5 != 4)
    inputs = clips[:4] + [str(waiting)] + clips[4:8] + [str(d / "media" / "clip04.mp4")]
    out = tmp_path / "run.jsonl"
    cmd = [sys.executable, "-m", "contrique_video", "-q", "score", *inputs, *model_args(d),
           "--format", "json", "--output", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 4):
        time.sleep(0.05)
    time.sleep(0.5)  # settle into the open of the pipe
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # never leave a run blocked on the pipe behind a failed test
    first = records(out)  # every line is a complete record
    assert proc.returncode == code, err.decode()
    assert [r["file"] for r in first] == inputs[:4] and all("error" not in r for r in first)
    waiting.unlink()
    make_clip(waiting, size=(96, 64), frames=6, content="moving")  # the input the signal stopped, now readable
    res = subprocess.run(cmd + ["--resume"], capture_output=True, timeout=300)
    assert res.returncode == 1  # the broken file
    final = records(out)
    assert [r["file"] for r in final] == inputs
    assert final[:4] == first  # finished records were not rescored or rewritten
    assert "error" not in final[4] and "error" in final[-1]
    assert len(res.stdout.splitlines()) == 5


def test_batches_run_off_the_main_thread_too():
    # signal handlers can only be set on the main thread; a service scoring on a worker thread still works
    import threading

    from contrique_video.runs.inputs import stop_signals

    errors, before = [], signal.getsignal(signal.SIGTERM)

    def work():
        try:
            with stop_signals() as raise_if_stopped:
                raise_if_stopped()
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert not errors and signal.getsignal(signal.SIGTERM) is before


def test_resume_needs_output_and_a_valid_file(batch, tmp_path):
    d = batch
    res = CliRunner().invoke(main, ["score", str(d / "media"), *model_args(d), "--resume"])
    assert res.exit_code == 2 and "--output" in res.stderr
    (tmp_path / "junk.jsonl").write_text("not json\n")
    res = CliRunner().invoke(main, ["-q", "score", str(d / "media"), *model_args(d), "--output",
                                    str(tmp_path / "junk.jsonl"), "--resume"])
    assert res.exit_code == 1 and "not a record" in res.stderr


def test_timeout_and_max_pixels_are_failures_not_crashes(batch, tmp_path):
    d = batch
    clip = str(d / "media" / "clip00.mp4")
    res = CliRunner().invoke(main, ["-q", "score", clip, *model_args(d), "--max-pixels", "1000"])
    assert res.exit_code == 1 and "exceed --max-pixels" in res.stderr
    res = CliRunner().invoke(main, ["-q", "score", clip, *model_args(d), "--timeout", "0.000001"])
    assert res.exit_code == 1 and "timed out" in res.stderr


@pytest.mark.parametrize("name", ["with space.mp4", "ünïcødé.mp4", "-leading-dash.mp4"])
def test_awkward_file_names(batch, tmp_path, monkeypatch, name):
    d = batch
    make_clip(tmp_path / name, size=(96, 64), frames=4)
    monkeypatch.chdir(tmp_path)  # a bare "-leading-dash.mp4" after `--` is a file, not an option
    res = CliRunner().invoke(main, ["-q", "score", *model_args(d), "--format", "json", "--", name])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["file"] == name


def test_ctrl_c_keeps_the_table_rows_and_the_plot_of_finished_inputs(batch, tmp_path, monkeypatch):
    d = batch
    clips = [str(d / "media" / f"clip0{i}.mp4") for i in range(4)]
    interrupt_on(monkeypatch, 3)
    res = CliRunner().invoke(main, ["-q", "score", *clips, *model_args(d), "--plot", str(tmp_path / "p.png"),
                                    "--output", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 130, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["file", "score", "band", "p5", "min", "frames"]
    assert [line.split()[0][-10:] for line in lines[1:3]] == ["clip00.mp4", "clip01.mp4"]
    assert lines[3].startswith("score: predicted MOS on 0-100 (higher is better)")
    assert "p5: 5th percentile" in lines[4] and "60-80 good" in lines[4] and len(lines) == 5
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert [r["file"] for r in records(tmp_path / "out.jsonl")] == clips[:2]
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "interrupted: the 2 inputs scored before it are kept" in err[0]


def test_table_rows_have_a_band_and_long_paths_show_where_they_were_cut(batch, tmp_path):
    d = batch
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "clip.mp4"
    deep.parent.mkdir()
    deep.write_bytes((d / "media" / "clip00.mp4").read_bytes())
    res = CliRunner().invoke(main, ["-q", "score", str(deep), *model_args(d)])
    assert res.exit_code == 0, res.output
    row = res.stdout.splitlines()[1]
    assert row.startswith("\u2026") and row.split()[0].endswith("-name-/clip.mp4") and len(row.split()[0]) == 40
    score, word = float(row.split()[1]), row.split()[2]
    assert word == next(w for upper, w in [(20, "bad"), (40, "poor"), (60, "fair"), (80, "good"), (1e9, "excellent")]
                        if score < upper)


def test_progress_shows_the_input_count_and_log_lines_are_not_glued_to_the_bar(batch, tmp_path):
    """Without -q: each bar says [i/N]; a log line printed while a bar is up (the pipe's unknown duration)
    starts its own line. With -q that informational line is gone too."""
    d = batch
    src = make_clip(tmp_path / "pipe.nut", size=(96, 64), frames=6).read_bytes()  # NUT: no duration in a pipe
    cmd = [sys.executable, "-m", "contrique_video", "score", "-", str(d / "media" / "clip01.mp4"), *model_args(d)[:4]]
    proc = subprocess.run(cmd, input=src, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    err = proc.stderr.decode()
    assert "[1/2] -" in err and "[2/2] clip01.mp4" in err
    logged = [line for line in err.split("\n") if "duration is unknown" in line]
    assert len(logged) == 1 and logged[0].split("\r")[-1].startswith("contrique-video: video duration is unknown")
    quiet = subprocess.run(cmd[:3] + ["-q"] + cmd[3:], input=src, capture_output=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == b""

"""``score --log``: libvmaf-style JSON, CSV and XML logs that parse with the standard library and agree
with the JSON record; atomic writes; usage errors."""

from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from click.testing import CliRunner
from media import make_clip
from checkpoints import small_model_with_head

from contrique_video.cli import main
from contrique_video.files import atomic_write as write_atomic
from contrique_video.pooling import POOLS, pool
from contrique_video.runs.logs import log_document


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("logs")
    small_model_with_head(d, head_seed=3)
    make_clip(d / "clip.mp4", size=(96, 64), frames=12, content="moving")
    make_clip(d / "other.mp4", size=(96, 64), frames=8, content="moving")
    return d


def run(d, *args):
    return CliRunner().invoke(main, ["-q", "score", "--weights", str(d / "r18.pt"), "--head", str(d / "head.json"),
                                     *map(str, args)], catch_exceptions=False)


def test_three_formats_parse_and_agree_with_the_record(model, tmp_path):
    logs = {}
    for fmt in ("json", "csv", "xml"):
        res = run(model, model / "clip.mp4", "--every", 2, "--format", "json", "--log", tmp_path / f"c.{fmt}")
        assert res.exit_code == 0, res.stderr
        record = json.loads(res.stdout)
        logs[fmt] = (tmp_path / f"c.{fmt}").read_text()
    assert not list(tmp_path.glob("*.partial"))

    doc = json.loads(logs["json"])
    assert {"version", "fps", "frames", "pooled_metrics", "aggregate_metrics"} <= set(doc)
    assert doc["aggregate_metrics"]["contrique"] == pytest.approx(record["score"])
    pooled = doc["pooled_metrics"]["contrique"]
    assert list(pooled) == list(POOLS)
    for key in ("min", "max", "mean", "harmonic_mean", "p5"):
        assert pooled[key] == pytest.approx(record["pooled"][key])
    frame_nums = [f["frameNum"] for f in doc["frames"]]
    assert frame_nums == [0, 2, 4, 6, 8, 10] and len(frame_nums) == record["frames_scored"]
    scores = [f["metrics"]["contrique"] for f in doc["frames"]]
    assert pooled["mean"] == pytest.approx(sum(scores) / len(scores))
    assert pooled["p1"] == pytest.approx(pd.Series(scores).quantile(0.01))

    rows = list(csv.DictReader(logs["csv"].splitlines()))
    assert list(rows[0]) == ["Frame", "contrique", "pts_time"]  # named after the metric, as libvmaf's CSV
    assert [int(r["Frame"]) for r in rows] == frame_nums
    assert [float(r["contrique"]) for r in rows] == pytest.approx(scores, abs=1e-6)
    assert [float(r["pts_time"]) for r in rows] == pytest.approx([f["pts_time"] for f in doc["frames"]], abs=1e-6)

    root = ET.fromstring(logs["xml"])
    frames = root.find("frames").findall("frame")
    assert [int(f.get("frameNum")) for f in frames] == frame_nums
    assert [float(f.get("contrique")) for f in frames] == pytest.approx(scores, abs=1e-6)
    metric = root.find("pooled_metrics").find("metric")
    assert metric.get("name") == "contrique"
    for key in POOLS:
        assert float(metric.get(key)) == pytest.approx(pooled[key], abs=1e-6)
    assert float(root.find("aggregate_metrics").get("contrique")) == pytest.approx(record["score"], abs=1e-6)


def test_log_fmt_overrides_the_extension_and_templates_name_each_input(model, tmp_path):
    res = run(model, model / "clip.mp4", model / "other.mp4", "--frames", 2, "--log", tmp_path / "{stem}.log",
              "--log-fmt", "xml")
    assert res.exit_code == 0, res.stderr
    for stem in ("clip", "other"):
        assert ET.parse(tmp_path / f"{stem}.log").getroot().tag == "contrique_video"


@pytest.mark.parametrize("args, message", [
    (["--log", "one.json", "OTHER"], "needs {stem}, {name} or {index}"),
    (["--log-fmt", "csv"], "--log-fmt needs --log FILE"),
    (["--log", "x.json", "--log-fmt", "yaml"], "Invalid value for '--log-fmt'"),
    (["--log", "{path}.json"], "only {stem}, {name} and {index}"),
])
def test_usage_errors_exit_2_in_one_line(model, tmp_path, args, message):
    args = [model / "other.mp4" if a == "OTHER" else a for a in args]
    res = run(model, model / "clip.mp4", *args)
    assert res.exit_code == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_atomic_write_leaves_the_old_file_when_rendering_fails(tmp_path, monkeypatch):
    target = tmp_path / "log.json"
    target.write_text("old")

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("contrique_video.files.os.fsync", boom)
    with pytest.raises(OSError):
        write_atomic(target, "new contents")  # fails after writing part of it
    monkeypatch.undo()
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["log.json"]
    write_atomic(target, "new")
    assert target.read_text() == "new"
    fresh = write_atomic(tmp_path / "fresh.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_sub_scores_and_vmaf_columns_are_logged_beside_contrique():
    class Result:
        file, model, head, scale, sampling, higher_is_better, score = "a.mp4", "m", "h", "MOS", "all", True, 50.0
        pooling = "head of the mean feature"
        frames = pd.DataFrame({"frame": [0, 1], "pts_time": [0.0, 0.04], "score": [40.0, 60.0], "raw": [0.1, 0.2],
                               "vmaf": [90.0, float("nan")]})
        reference = {"vmaf": 90.0}

    doc = log_document(Result())
    assert doc["frames"][1]["metrics"] == {"contrique": 60.0, "contrique_raw": 0.2, "vmaf": None}
    assert doc["pooled_metrics"]["vmaf"]["mean"] == 90.0
    assert doc["aggregate_metrics"] == {"contrique": 50.0, "vmaf": 90.0}
    assert pool([1.0, -1.0], "harmonic_mean") is None and pool([], "mean") is None

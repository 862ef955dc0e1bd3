"""Outputs a user can rely on (#29): -o never wipes records, --resume carries every output over, a missing
optional package is a usage error before any work, VMAF in every format, records and legends that say what
was done, and backend auto's choice with -v only."""

from __future__ import annotations

import json
import logging
import sys

import pandas as pd
import pytest
from checkpoints import interrupt_on, small_model_with_head
from click.testing import CliRunner
from media import make_clip

from contrique_video import Outputs, ScorerSettings, score_many
from contrique_video.api import POOLING, Scorer
from contrique_video.cli import main
from contrique_video.decode.sampler import Sampling
from contrique_video.errors import UsageError


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("outputs")
    small_model_with_head(d, head_seed=0)
    for i in range(3):
        make_clip(d / f"clip{i}.mp4", size=(96, 64), frames=6, content="moving")
    return d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def model(d):
    return ["--weights", d / "r18.pt", "--head", d / "head.json", "--frames", "2"]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- 1: -o never wipes records


def test_an_output_holding_records_is_refused_before_any_work(media, tmp_path, monkeypatch):
    d, out = media, tmp_path / "r.jsonl"
    assert run("-q", "score", d / "clip0.mp4", d / "clip1.mp4", *model(d), "-o", out).exit_code == 0
    before = out.read_text()
    loaded = []
    monkeypatch.setattr(Scorer, "__init__", lambda self, **kw: loaded.append(kw) or (_ for _ in ()).throw(AssertionError))
    for args in ([d / "clip2.mp4"], [d / "missing.mp4"]):  # another input; a typo
        res = run("-q", "score", *args, *model(d), "-o", out)
        assert res.exit_code == 2 and "--resume" in res.stderr and "--overwrite" in res.stderr, res.output
        assert "already holds 2 records" in res.stderr
    assert out.read_text() == before and not loaded  # untouched, and no model was loaded
    res = run("-q", "score", d / "clip2.mp4", *model(d), "-o", out, "--resume", "--overwrite")
    assert res.exit_code == 2 and "not both" in res.stderr


def test_overwrite_replaces_and_resume_appends(media, tmp_path):
    d, out = media, tmp_path / "r.csv"
    assert run("-q", "score", d / "clip0.mp4", *model(d), "-o", out).exit_code == 0
    assert run("-q", "score", d / "clip1.mp4", *model(d), "-o", out, "--overwrite").exit_code == 0
    assert list(pd.read_csv(out)["file"]) == [str(d / "clip1.mp4")]
    assert run("-q", "score", d / "clip1.mp4", d / "clip2.mp4", *model(d), "-o", out, "--resume").exit_code == 0
    assert list(pd.read_csv(out)["file"]) == [str(d / "clip1.mp4"), str(d / "clip2.mp4")]
    # an empty file (touch r.csv) holds nothing to lose
    (tmp_path / "empty.jsonl").touch()
    assert run("-q", "score", d / "clip0.mp4", *model(d), "-o", tmp_path / "empty.jsonl").exit_code == 0


def test_help_says_what_o_resume_and_overwrite_do():
    text = " ".join(run("score", "--help").output.split())
    assert "append" not in text
    assert "A file that already holds records is refused (exit 2, before any work) unless --resume or --overwrite" in text
    assert "--overwrite Replace an --output file that already holds records." in text


def test_the_api_refuses_at_the_call(media, tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"file": "a.mp4", "score": 1}\n')
    with pytest.raises(UsageError, match="resume=True .* overwrite=True"):
        score_many([str(media / "clip0.mp4")], scorer=ScorerSettings(), outputs=Outputs(output=out))
    assert out.read_text() == '{"file": "a.mp4", "score": 1}\n'


# --------------------------------------------------------------------------- 2: --resume carries every output


def test_resume_carries_frame_rows_logs_and_parquet(media, tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    d = media
    names = [d / f"clip{i}.mp4" for i in range(3)]
    out, frames, table = tmp_path / "r.jsonl", tmp_path / "frames.csv", tmp_path / "t.parquet"
    outputs = ["-o", out, "--csv", frames, "--parquet", table, "--log", tmp_path / "{stem}.json"]
    interrupt_on(monkeypatch, 2)
    assert run("-q", "score", *names, *model(d), *outputs).exit_code == 130
    first = pd.read_csv(frames)
    assert set(first["file"]) == {str(names[0])} and len(first) == 2
    monkeypatch.undo()
    res = run("-q", "score", *names, *model(d), *outputs, "--resume")
    assert res.exit_code == 0, res.output
    assert [r["file"] for r in lines(out)] == [str(n) for n in names]
    rows = pd.read_csv(frames)
    assert list(rows["file"]) == [str(n) for n in names for _ in range(2)]  # every input's rows, once
    pd.testing.assert_frame_equal(rows.iloc[:2], first)  # the earlier rows as they were
    assert list(pd.read_parquet(table)["file"]) == [str(n) for n in names]
    assert all((tmp_path / f"clip{i}.json").is_file() for i in range(3))


# --------------------------------------------------------------------------- 3: missing optional packages


def test_parquet_without_pyarrow_is_a_usage_error_before_any_work(media, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now fails as if not installed
    loaded = []
    monkeypatch.setattr(Scorer, "__init__", lambda self, **kw: loaded.append(kw) or (_ for _ in ()).throw(AssertionError))
    res = run("-q", "score", media / "clip0.mp4", *model(media), "--parquet", tmp_path / "t.parquet")
    assert res.exit_code == 2 and "pip install 'contrique-video[parquet]'" in res.stderr, res.output
    assert not loaded and not list(tmp_path.iterdir())
    with pytest.raises(UsageError, match=r"contrique-video\[parquet\]"):
        score_many([str(media / "clip0.mp4")], scorer=ScorerSettings(), outputs=Outputs(parquet=tmp_path / "t.parquet"))


def test_engine_without_dask_and_reference_without_ffmpeg_name_their_extras(media, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    res = run("-q", "score", media / "clip0.mp4", *model(media), "--engine", "local")
    assert res.exit_code == 2 and "contrique-video[dask]" in res.stderr
    with pytest.raises(UsageError, match=r"contrique-video\[vmaf\]"):
        score_many([str(media / "clip0.mp4")], scorer=ScorerSettings(), outputs=Outputs(reference=media / "clip1.mp4"))


# --------------------------------------------------------------------------- 5: VMAF in every format


def test_vmaf_is_in_every_output_format(media, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("pyarrow")
    d = media
    args = ["-q", "score", d / "clip0.mp4", d / "clip1.mp4", *model(d), "--reference", d / "clip0.mp4"]
    table = run(*args, "-o", tmp_path / "r.csv", "--parquet", tmp_path / "t.parquet")
    assert table.exit_code == 0, table.output
    header = table.stdout.splitlines()[0].split()
    assert header[-2:] == ["vmaf", "vmaf_p5"]
    row = table.stdout.splitlines()[1].split()
    assert float(row[-2]) > 95  # the reference against itself
    assert "vmaf, vmaf_p5: VMAF against the reference" in table.stdout
    stdout_csv = pd.read_csv(pd.io.common.StringIO(run(*args, "--format", "csv").stdout))
    records = pd.read_csv(tmp_path / "r.csv")
    parquet = pd.read_parquet(tmp_path / "t.parquet")
    as_json = [json.loads(line) for line in run(*args, "--format", "json").stdout.splitlines()]
    for frame in (stdout_csv, records, parquet):
        for column in ("vmaf", "vmaf_min", "vmaf_p5", "vmaf_harmonic_mean", "vmaf_all_frames", "vmaf_model", "reference"):
            assert column in frame.columns
        assert frame["vmaf"].tolist() == pytest.approx([r["vmaf"] for r in as_json], abs=1e-3)
        assert frame["vmaf_p5"].tolist() == pytest.approx([r["vmaf_pooled"]["p5"] for r in as_json], abs=1e-3)
    # without a reference the tables keep their columns
    plain = run("-q", "score", d / "clip0.mp4", *model(d), "--format", "csv").stdout
    assert "vmaf" not in plain


# --------------------------------------------------------------------------- 6: records say what was done


def test_the_record_and_legend_say_how_the_score_is_computed(media, tmp_path):
    d = media
    res = run("-q", "score", d / "clip0.mp4", *model(d), "--format", "json")
    record = json.loads(res.stdout)
    assert record["pooling"] == POOLING and "mean feature" in POOLING and record["sampling"] == "2 frames uniformly"
    table = run("-q", "score", d / "clip0.mp4", *model(d)).stdout
    assert "the mean over frames" not in table
    assert "from the mean of the frames' features (not the mean of the frame scores)" in table
    assert "the head applied to each frame" in table
    assert pd.read_csv(pd.io.common.StringIO(run("-q", "score", d / "clip0.mp4", *model(d), "--format", "csv").stdout)
                       )["pooling"].tolist() == [POOLING]


# --------------------------------------------------------------------------- 8: backend auto once, model names


def test_backend_auto_says_its_choice_with_v_only(monkeypatch, tmp_path, caplog):
    """auto measures nothing on a run, so its choice is a -v detail; a first run's one line is the preparation."""
    from contrique_video.api import builtin_weights
    from contrique_video.backends import open_backend

    monkeypatch.setenv("CONTRIQUE_VIDEO_CACHE", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="contrique_video"):
        open_backend(builtin_weights(), "auto", "fp32")
    first = [r.getMessage() for r in caplog.records]
    assert not [m for m in first if m.startswith("backend auto")], first
    assert len([m for m in first if m.startswith("prepared builtin-v4 for ")]) == 1, first
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="contrique_video"):
        open_backend(builtin_weights(), "auto", "fp32")
    assert not [r for r in caplog.records if "backend auto" in r.getMessage() or "prepared" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="contrique_video"):
        open_backend(builtin_weights(), "auto", "fp32")
    assert any(r.getMessage().startswith("backend auto:") and "preferred" in r.getMessage() for r in caplog.records)


def test_messages_name_the_model_not_its_file(monkeypatch, tmp_path, caplog):
    from contrique_video.api import builtin_card, builtin_weights
    from contrique_video.backends import onnx_cache
    from contrique_video.models import ResolvedModel

    monkeypatch.setenv("CONTRIQUE_VIDEO_CACHE", str(tmp_path))
    monkeypatch.setattr(onnx_cache, "export_onnx", lambda model, path, source: path)
    monkeypatch.setattr(ResolvedModel, "load", lambda self: None)
    with caplog.at_level(logging.INFO, logger="contrique_video"):
        onnx_cache.cached_export(builtin_weights())
    assert f"prepared {builtin_card()['id']} for ONNX Runtime" in caplog.text and "builtin.json" not in caplog.text


def test_verbose_flag(media):
    res = run("-v", "score", media / "clip0.mp4", *model(media))
    assert res.exit_code == 0, res.output
    assert run("-q", "-v", "score", media / "clip0.mp4", *model(media)).exit_code == 2

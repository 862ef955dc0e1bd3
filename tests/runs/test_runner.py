"""The batch runner as Python users call it (contrique_video.score_many): records flushed as inputs finish,
one record schema for CSV and Parquet, outputs completed from finished inputs when a run stops early."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from checkpoints import interrupt_on, small_model_with_head
from media import make_clip, make_text

from contrique_video import Outputs, score_many
from contrique_video.api import DEFAULT_MAX_PIXELS, Scorer
from contrique_video.decode.sampler import Sampling
from contrique_video.runs.batch import make_executor
from contrique_video.runs.records import COLUMNS, RecordLog


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    d = tmp_path_factory.mktemp("runner")
    small_model_with_head(d, head_seed=0)
    for i in range(3):
        make_clip(d / f"clip{i}.mp4", size=(96, 64), frames=4, content="moving")
    make_text(d / "broken.mp4")
    return d


@pytest.fixture(scope="module")
def scorer(batch):
    return Scorer(weights=batch / "r18.pt", head=batch / "head.json", threads=1)


def test_one_call_writes_records_frames_and_parquet(batch, scorer, tmp_path):
    pytest.importorskip("pyarrow")
    names = [str(batch / n) for n in ("clip0.mp4", "broken.mp4", "clip1.mp4")]
    out, frames, table = tmp_path / "out.csv", tmp_path / "frames.csv", tmp_path / "t.parquet"
    outcomes = list(score_many(names, scorer=scorer, sampling=Sampling("frames", 2),
                               outputs=Outputs(output=out, frames_csv=frames, parquet=table)))
    assert [o.index for o in outcomes] == [0, 1, 2] and [o.file for o in outcomes] == names
    assert outcomes[1].result is None and "broken.mp4" in outcomes[1].error
    written = pd.read_csv(out)
    assert list(written.columns) == COLUMNS and list(written["file"]) == names
    parquet = pd.read_parquet(table)
    assert list(parquet.columns) == COLUMNS and list(parquet["file"]) == names
    assert parquet["raw_score"].notna().sum() == 2  # one flattener: raw_score is in every table
    assert written["score"].tolist()[0] == pytest.approx(parquet["score"].tolist()[0], abs=1e-9)
    assert sorted(set(pd.read_csv(frames)["file"])) == [names[0], names[2]] and len(pd.read_csv(frames)) == 4


def test_interrupted_run_keeps_finished_outputs_and_resume_completes_them(batch, scorer, tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    names = [str(batch / f"clip{i}.mp4") for i in range(3)]
    out, frames, table = tmp_path / "out.jsonl", tmp_path / "frames.csv", tmp_path / "t.parquet"
    interrupt_on(monkeypatch, 2)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for outcome in score_many(names, scorer=scorer, sampling=Sampling("frames", 2),
                                  outputs=Outputs(output=out, frames_csv=frames, parquet=table)):
            seen.append(outcome.file)
    assert seen == names[:1]
    assert [json.loads(line)["file"] for line in out.read_text().splitlines()] == names[:1]
    assert list(pd.read_parquet(table)["file"]) == names[:1]
    assert set(pd.read_csv(frames)["file"]) == {names[0]} and not (tmp_path / "frames.csv.partial").exists()

    monkeypatch.undo()
    rest = [o.file for o in score_many(names, scorer=scorer, sampling=Sampling("frames", 2),
                                      outputs=Outputs(output=out, resume=True, parquet=table))]
    assert rest == names[1:]  # the finished input was not scored again
    assert [json.loads(line)["file"] for line in out.read_text().splitlines()] == names
    assert list(pd.read_parquet(table)["file"]) == names  # the earlier record too


def test_resuming_an_older_csv_keeps_its_columns(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("file,score,error\na.mp4,50.0,\n")
    records = RecordLog(old, resume=True)
    assert records.done == {"a.mp4"}
    records.write({"file": "b.mp4", "score": 60.0, "pooled": {"mean": 60.0}, "model": "m"})
    records.close()
    assert old.read_text().splitlines() == ["file,score,error", "a.mp4,50.0,", "b.mp4,60.0,"]


def test_arguments_are_checked_at_the_call(batch, scorer):
    with pytest.raises(ValueError, match="resume needs output"):
        score_many(["a.mp4"], scorer=scorer, outputs=Outputs(resume=True))
    with pytest.raises(ValueError, match="needs {stem}, {name} or {index}"):
        score_many(["a.mp4", "b.mp4"], scorer=scorer, outputs=Outputs(log_template="one.json"))
    with pytest.raises(TypeError, match="give ScorerSettings, not a Scorer"):
        make_executor("local", scorer)


def test_scorer_owns_the_4k_guard_and_api_does_not_import_training():
    import inspect

    assert inspect.signature(Scorer).parameters["max_pixels"].default == DEFAULT_MAX_PIXELS == 4096 * 2304
    code = ("import sys, contrique_video.api; "
            "print(sorted(m for m in sys.modules if m.startswith('contrique_video.training')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert res.stdout.strip() == "[]"

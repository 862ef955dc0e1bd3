"""`precision-check` (the card's "precisions" entries that auto obeys) and `model-table` (the card's accuracy
table) on a tiny MOS set made here."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data

from contrique_video.api import builtin_weights
from contrique_video.cli import main
from contrique_video.training.fit import evaluate
from contrique_video.features import Block


@pytest.fixture(scope="module")
def mos_set(tmp_path_factory):
    """12 JPEGs of one photo whose quality, and "MOS", rise together; mos.csv and images/ as CLIVE lays them out."""
    d = tmp_path_factory.mktemp("mos")
    (d / "images").mkdir()
    base = Image.fromarray(data.astronaut()).resize((64, 64))
    rows = ["image,mos"]
    for i in range(12):
        base.save(d / "images" / f"img{i}.jpg", quality=5 + 8 * i)
        rows.append(f"img{i}.jpg,{10 + 7 * i}")
    (d / "mos.csv").write_text("\n".join(rows) + "\n")
    return d


def invoke(*args):
    return CliRunner().invoke(main, ["-q", *map(str, args)])


def test_precision_check_writes_entries_auto_reads(mos_set, tmp_path):
    card = tmp_path / "model.json"
    shutil.copy(builtin_weights(), card)
    shutil.copy(builtin_weights().parent / json.loads(card.read_text())["weights"]["file"], tmp_path)
    res = invoke("precision-check", mos_set, "--weights", card, "--paths", "torch:bf16", "--step", "2",
                 "--threads", "1", "-o", tmp_path / "out.json", "--write-card")
    assert res.exit_code == 0, res.output
    entries = json.loads(res.stdout)
    entry = entries["torch bf16"]
    assert entry["head"] == "clive-v6"  # the card's default head, named in the entry
    assert entry["images"].startswith(f"{mos_set.name}, every 2. row of mos.csv (6 of 12 images)")
    assert abs(entry["srcc_change"]) <= 2 and 0 < entry["max_abs_score_change"] < 5
    assert entry["measured"].endswith("--write-card") and "precision-check" in entry["measured"]
    assert json.loads((tmp_path / "out.json").read_text()) == entries
    scores = np.load(tmp_path / "out.npy")
    assert scores.shape == (2, 6) and np.all(np.isfinite(scores))
    written = json.loads(card.read_text())["precisions"]
    assert written["torch bf16"] == entry and "openvino bf16" in written  # the card's other entries stay

    from contrique_video.models.card import read_card

    assert read_card(card).precisions["torch bf16"]["srcc_change"] == entry["srcc_change"]


@pytest.mark.parametrize("args, expect", [
    (["--paths", "torch:int4"], "give BACKEND:PRECISION pairs"),
    (["--paths", "auto:fp32"], "give BACKEND:PRECISION pairs"),
    (["--write-card", "--weights", "x.pt"], "--write-card needs a model card"),
])
def test_precision_check_usage_errors(mos_set, args, expect):
    res = invoke("precision-check", mos_set, *args)
    assert res.exit_code == 2 and expect in res.output


def test_model_table_rows_follow_the_protocol_and_reuse_the_cache(mos_set, tmp_path):
    args = ["model-table", mos_set / "images", "--mos", mos_set / "mos.csv", "--imagenet", "", "--cache",
            tmp_path / "cache", "--threads", "1", "--format", "json", "--splits", "3"]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["builtin-v4", "its frozen trunk alone, stages-meanstd, two scales",
                                         "its trunk's last map only (mean), two scales", "log Laplacian variance"]
    dims = [r["dim"] for r in rows]
    assert dims[0] == 9056 and dims[1] < dims[0] and dims[2:] == [2 * 1280, 1]
    # The Laplacian row is the protocol on the Laplacian feature, computed here independently of the table.
    lap = np.load(tmp_path / "cache" / "laplacian.npz")["features"]
    mos = np.arange(10, 94, 7, dtype=float)
    expect = evaluate(lap, mos, splits=3, blocks=[Block("all", 1, True)])
    assert rows[-1]["srcc"] == pytest.approx(expect["srcc"])
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["laplacian.npz", "model.npz"]
    again = invoke(*args)
    assert [json.loads(line) for line in again.stdout.splitlines()] == rows


def test_model_table_refuses_a_bad_model_option(mos_set, tmp_path):
    res = invoke("model-table", mos_set / "images", "--mos", mos_set / "mos.csv", "--cache", tmp_path,
                 "--model", "no-equals-sign")
    assert res.exit_code == 2 and "give NAME=CARD" in res.output

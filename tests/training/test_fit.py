"""Heads: block-wise Ridge fusion folds into one linear head; `fit` and `evaluate` on a folder with MOS."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import data
from checkpoints import random_official_checkpoint

from contrique_video.cli import main
from contrique_video.models.head import LinearHead
from contrique_video.features import Block
from contrique_video.training.fit import evaluate, fit_linear, fit_ridge


def test_single_block_is_plain_ridge():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 20)), rng.normal(size=60)
    ours, ref = fit_linear(X, y), fit_ridge(X, y)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), atol=1e-9)


def test_blocks_fold_into_one_head_on_raw_features():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(80, 30)) * 0.01
    B = rng.normal(size=(80, 4)) * [1, 100, 0.001, 5] + [0, 50, 3, -2]
    y = A[:, 0] * 300 + B[:, 1] * 0.2 + rng.normal(size=80)
    fit = fit_linear(np.hstack([A, B]), y, [Block("a", 30), Block("b", 4, standardize=True)])
    by_hand = (fit_ridge(A, y).predict(A) + fit_ridge((B - B.mean(0)) / B.std(0), y).predict((B - B.mean(0)) / B.std(0))) / 2
    np.testing.assert_allclose(fit.predict(np.hstack([A, B])), by_hand, atol=1e-6)
    with pytest.raises(Exception, match="cover 30 columns"):
        fit_linear(np.hstack([A, B]), y, [Block("a", 30)])


def test_evaluate_protocol_reports_medians():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(100, 5))
    y = X @ np.array([1.0, 2, 0, 0, 0]) + rng.normal(size=100) * 0.1
    res = evaluate(X, y)
    assert res["splits"] == 10 and len(res["srcc_all"]) == 10
    assert res["srcc"] > 0.95 and res["srcc"] == pytest.approx(np.median(res["srcc_all"]))
    noise = evaluate(rng.normal(size=(100, 5)), y)
    assert abs(noise["srcc"]) < 0.4


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    random_official_checkpoint(d / "r18.pt", arch="resnet18")
    base = Image.fromarray(data.astronaut()).resize((96, 96))
    rows = ["image,mos"]
    for i in range(12):
        base.save(d / f"img{i}.jpg", quality=5 + 8 * i)  # quality rises with i, and so does the "MOS"
        rows.append(f"img{i}.jpg,{10 + 7 * i}")
    (d / "mos.csv").write_text("\n".join(rows) + "\n")
    return d


def test_fit_writes_a_head_that_scores(folder, tmp_path):
    d = folder
    res = CliRunner().invoke(main, ["-q", "fit", str(d), "--mos", str(d / "mos.csv"), "--weights", str(d / "r18.pt"),
                                    "--output", str(tmp_path / "h.json"), "--cache", str(tmp_path / "f.npz")])
    assert res.exit_code == 0, res.output
    head = LinearHead.load(tmp_path / "h.json")
    assert head.dim == 1024 and head.features == "weights:r18.pt" and "srcc" in head.extra["cv_10x80_20"]
    res = CliRunner().invoke(main, ["-q", "score", str(d / "img0.jpg"), "--weights", str(d / "r18.pt"),
                                    "--head", str(tmp_path / "h.json"), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert np.isfinite(json.loads(res.stdout)["score"])


def test_evaluate_baseline_and_cache(folder, tmp_path):
    d = folder
    args = ["-q", "evaluate", str(d), "--mos", str(d / "mos.csv"), "--baseline", "laplacian", "--cache", str(tmp_path / "c.npz")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["features"] == "laplacian"
    second = CliRunner().invoke(main, args)
    assert json.loads(second.stdout) == json.loads(first.stdout)


@pytest.mark.parametrize(
    "table, expect",
    [
        ("image,mos\nimg0.jpg,abc\n", "non-numeric"),
        ("image,mos\nimg0.jpg,\n", "non-numeric"),
        ("image,score\nimg0.jpg,3\n", "needs columns"),
        ("image,mos\nnope.jpg,3\n", "match no file"),
    ],
)
def test_bad_mos_tables(folder, tmp_path, table, expect):
    (tmp_path / "m.csv").write_text(table)
    res = CliRunner().invoke(main, ["-q", "evaluate", str(folder), "--mos", str(tmp_path / "m.csv"), "--baseline", "nss"])
    assert res.exit_code == 1 and expect in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_feature_cache_keeps_what_was_extracted_when_a_run_stops(tmp_path):
    """An extraction cut short (an error, Ctrl-C) keeps its finished rows in the cache, in a folder it creates,
    and the next run extracts only the rest."""
    from contrique_video.training.fit import media_features

    paths = [tmp_path / f"{i}.png" for i in range(5)]
    cache = tmp_path / "new" / "folder" / "f.npz"
    calls = []

    def extract(p):
        calls.append(p)
        if p == paths[3] and len(calls) == 4:
            raise KeyboardInterrupt
        return np.full(3, float(p.stem))

    with pytest.raises(KeyboardInterrupt):
        media_features(extract, paths, cache, "k", progress=False)
    assert cache.is_file()
    calls.clear()
    got = media_features(extract, paths, cache, "k", progress=False)
    assert calls == paths[3:] and got[:, 0].tolist() == [0, 1, 2, 3, 4]

"""`degradation-check`: the shipped model and head on a photo that ships with scikit-learn, two noise ladders at
96x96 (no wallpapers, no clips); the table, the JSON, the CSV rows and --strict's exit code."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
from click.testing import CliRunner

from contrique_video.cli import main
from contrique_video.training import degradation as deg

SMALL = ["--images", deg.SKLEARN_CHINA, "--types", "white_noise,ffmpeg_noise", "--clips", "0", "--crop", "96",
         "--threads", "1"]


def invoke(*args):
    return CliRunner().invoke(main, ["-q", "degradation-check", *map(str, args)])


@pytest.fixture(scope="module")
def inverted_head(tmp_path_factory):
    """The shipped default head turned upside down: its score rises with every kind of damage."""
    from contrique_video.training.ranking import model_features

    head = model_features(None)[1].check_head()
    path = tmp_path_factory.mktemp("head") / "inverted.json"
    dataclasses.replace(head, weights=-head.weights, name="inverted").save(path)
    return path


def test_table_csv_and_strict_pass(tmp_path):
    out = tmp_path / "check.csv"
    res = invoke(*SMALL, "-o", out, "--strict")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("1 held-out images, 0 clips, head ")
    assert any(line.split()[:2] == ["white_noise", "100.0%"] for line in lines), res.stdout
    assert any(line.startswith("ALL (stills)") and "of 10 pairs" in line for line in lines), res.stdout
    assert lines[-1] == "targets: all met"
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["date", "cpu", "commit", "command", "head", "metric", "value"]
    metrics = {r["metric"]: float(r["value"]) for r in rows}
    assert metrics["stills.still_pairs"] == 10 and metrics["stills.ordered_share"] == 1.0
    assert metrics["stills.ordered.white_noise"] == metrics["stills.ordered.ffmpeg_noise"] == 1.0
    assert metrics["stills.max_above_clean"] < 0
    assert rows[0]["command"] == ("contrique-video degradation-check --images " + deg.SKLEARN_CHINA
                                  + " --types white_noise,ffmpeg_noise --crop 96 --clips 0 --threads 1 -o "
                                  + str(out) + " --strict")
    invoke(*SMALL, "-o", out)
    assert len(list(csv.DictReader(out.open()))) == 2 * len(rows)  # appended, one header


def test_a_missed_target_fails_only_with_strict(inverted_head):
    res = invoke(*SMALL, "--head", inverted_head, "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["head"] == "inverted" and doc["grain"] is None and doc["clips"] == 0
    assert doc["summary"]["ordered_share"] < 0.97 and doc["missed"][0].startswith("ordered ")
    assert doc["summary"]["min_clip_crf_share"] is None  # NaN (no clips) is null, as JSON has no NaN
    assert len(doc["rows"]) == 12 and {r["kind"] for r in doc["rows"]} == {"white_noise", "ffmpeg_noise"}
    strict = invoke(*SMALL, "--head", inverted_head, "--strict")
    assert strict.exit_code == 1
    assert strict.stdout.splitlines()[-1].startswith("targets: ordered ")
    assert strict.stderr.strip().splitlines() == [f"contrique-video: error: targets missed: {'; '.join(doc['missed'])}"]


@pytest.fixture
def grain_cache(tmp_path):
    """A grain cache of the built-in model that already holds every tier-1 clip of one source (features of a small
    photo with ffmpeg-like noise of the clip's strength, x264-encoded at its CRF), so no 960x540 clip is made."""
    import numpy as np

    from contrique_video.training import grain
    from contrique_video.training.ranking import FeatureCache, model_features

    extract, model = model_features(None, threads=1)
    cache = FeatureCache(tmp_path / "grain.npz", model.model_id + "/clip-mean")
    img = deg.load_pristine(deg.SKLEARN_CHINA, None, 96)
    clips = grain.plan("gen:text/100", 1)
    for c in clips:
        n = int(c.grain.partition(":")[2] or 0)
        noisy = deg.ffmpeg_noise(img, n, np.random.default_rng(0)) if n else img
        frame = deg.crf_encode([noisy], "libx264", c.crf)[0] if c.crf else noisy
        cache.get(c.key, lambda frame=frame: frame, extract)
    cache.save()
    return cache.path, clips


def test_grain_clips_are_read_from_the_grain_cache(tmp_path, grain_cache):
    path, clips = grain_cache
    out = tmp_path / "check.csv"
    res = invoke(*SMALL, "--grain", "gen:text/100", "--grain-cache", path, "-o", out)
    assert res.exit_code == 0, res.output
    assert f"grain clips: {len(clips)}" in res.stdout and "grain cost at x264 CRF 16" in res.stdout
    metrics = {r["metric"]: float(r["value"]) for r in csv.DictReader(out.open())}
    assert metrics["grain_clips.clips"] == len(clips) and "grain_clips.cost.t:12" in metrics
    assert metrics["grain_clips.cost.t:12"] > 0  # noise of strength 12 costs the clean CRF 16 encode points


def test_grain_clips_are_scored_with_the_weights_under_test(tmp_path, grain_cache):
    """With --weights the grain clips take that model's features: the built-in model's grain cache is refused."""
    from contrique_video.api import builtin_weights

    builtin = builtin_weights()
    card = json.loads(builtin.read_text())
    card["id"] = "builtin-copy"
    card["weights"] = {k: v for k, v in card["weights"].items() if k != "openvino_ir"}
    (tmp_path / card["weights"]["file"]).symlink_to(builtin.parent / card["weights"]["file"])
    (tmp_path / "copy.json").write_text(json.dumps(card))
    from contrique_video.models.head import resolve_head

    head = dataclasses.replace(resolve_head(card["default_head"]), features="builtin-copy")  # a head of the copy
    head.save(tmp_path / "head.json")
    res = invoke(*SMALL, "--weights", tmp_path / "copy.json", "--head", tmp_path / "head.json", "--grain",
                 "gen:text/100", "--grain-cache", grain_cache[0])
    assert res.exit_code == 1, res.output
    assert f"feature cache {grain_cache[0]} holds" in res.stderr and "builtin-copy" in res.stderr


def test_precision_reaches_the_model_and_names_the_cache(tmp_path, monkeypatch):
    """--precision fp32 gives the model card's tables on every CPU (auto would run bf16 where the card allows it);
    the feature cache records what it ran."""
    import numpy as np

    from contrique_video import api

    asked = []

    class Recording(api.Scorer):
        def __init__(self, *args, **kw):
            asked.append(kw.get("precision"))
            super().__init__(*args, **kw)

    monkeypatch.setattr(api, "Scorer", Recording)
    res = invoke(*SMALL, "--precision", "fp32", "--cache", tmp_path / "c.npz")
    assert res.exit_code == 0, res.output
    assert asked == ["fp32"]
    with np.load(tmp_path / "c.npz") as z:
        assert str(z["extractor"]).endswith("@96") and "(" not in str(z["extractor"])  # fp32 rows carry no tag


@pytest.mark.parametrize("args, code, expect", [
    (["--features", "lite2", "--head", "h.json", "--precision", "fp32"], 2, "it goes without --features"),
    (["--also", "x.json"], 2, "--also goes with --features"),
    (["--features", "lite2"], 2, "--features needs --head"),
    (["--features", "lite2/nope", "--head", "h.json"], 2, "unknown layout 'nope'"),
    (["--grain", "gen:text/100", "--features", "lite2", "--head", "h.json"], 2, "it goes without --features"),
    (["--types", "white_noise,nope"], 2, "unknown degradation type 'nope'"),
    (["--grain-tiers", "1,x"], 2, "give comma-separated tiers"),
    (["--grain", "gen:text/100", "--grain-tiers", "4"], 2, "grain tier 4 does not exist"),
    (["--images", "Storm"], 2, "Storm is a wallpaper photo: pass --wallpapers"),
    (["--format", "csv"], 2, "'csv' is not one of 'table', 'json'"),
    (["--images", "package:no_such_package_zz/a.jpg"], 1, "pip install no_such_package_zz"),
    (["--head", "no_such_head"], 1, "unknown head 'no_such_head'"),
])
def test_bad_input_is_one_line(args, code, expect, tmp_path):
    res = CliRunner().invoke(main, ["degradation-check", *args])
    assert res.exit_code == code, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and expect in res.stderr, res.stderr


def test_a_missing_wallpaper_is_an_input_error(tmp_path):
    res = invoke("--wallpapers", tmp_path, "--images", "Storm")
    assert res.exit_code == 1 and "photo Storm not found under" in res.stderr

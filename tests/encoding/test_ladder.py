"""Ladders: the hull on known points, rung picking, the grid at the display size, partial runs and outputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from encoding_helpers import StubScorer, fake_ffmpeg, leftovers
from media import make_clip

from contrique_video.api import builtin_card
from contrique_video.cli import main
from contrique_video.encoding.encode import EncodeSettings
from contrique_video.encoding.ladder import (
    Grid,
    Hooks,
    build_ladder,
    parse_crfs,
    pick_rungs,
    save,
    upper_hull,
)
from contrique_video.errors import InputError
from contrique_video.runs.inputs import Terminated


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("ladder") / "src.mp4", size=(160, 90), frames=24)


def test_upper_hull_on_known_points():
    #        0       1       2       3        4        5       6
    x = [100.0, 200.0, 300.0, 400.0, 800.0, 900.0, 150.0]
    y = [40.0, 60.0, 62.0, 75.0, 80.0, 79.0, 30.0]
    # 6 is dominated by 0; 2 lies under the chord 1-3; 5 is past the best; 4 stays (concave)
    assert upper_hull(x, y) == [0, 1, 3, 4]
    assert upper_hull([1, 2, 3], [1, 2, 3]) == [0, 2]  # collinear middle point adds nothing
    assert upper_hull([5, 5, 6], [1, 3, 2]) == [1]  # same rate: only the better one


def test_pick_rungs_spreads_in_log_rate():
    kbps = [100, 200, 400, 800, 1600, 3200, 6400]
    hull = list(range(7))
    assert pick_rungs(kbps, hull, 3) == [0, 3, 6]
    assert pick_rungs(kbps, [0, 5], 4) == [0, 5]


def test_parse_crfs():
    assert parse_crfs("18:42:4") == [18, 22, 26, 30, 34, 38, 42]
    assert parse_crfs("30,22,38") == [22, 30, 38]
    with pytest.raises(InputError, match="START:STOP:STEP"):
        parse_crfs("18:42")


def test_grid_is_scored_at_display_size(clip, tmp_path):
    stub = StubScorer()
    seen = []
    ladder = build_ladder(clip, stub, "libx264", Grid([90, 64, 1080], [24, 36]), settings=EncodeSettings("ultrafast"),
                          workdir=tmp_path, hooks=Hooks(inspect=lambda h, c, f: seen.append((h, c, f.name))))
    assert [(r.height, r.width, r.crf) for r in ladder.renditions] == [(90, 160, 24), (90, 160, 36), (64, 114, 24),
                                                                        (64, 114, 36)]
    assert set(stub.sizes) == {(160, 90)}  # 64p renditions upscaled to the source size before scoring
    assert [s[2] for s in seen] == ["90p_crf24.mkv", "90p_crf36.mkv", "display.mkv", "display.mkv"]
    assert not ladder.partial and any(r.on_hull for r in ladder.renditions)
    assert all(r.on_hull for r in ladder.renditions if r.rung)
    assert leftovers(tmp_path) == []


def test_failure_mid_way_gives_a_partial_ladder(clip, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    flaky = fake_ffmpeg(tmp_path, fail_from_call=3)  # two renditions, then the third fails
    ladder = build_ladder(clip, StubScorer(), "libx264", Grid([90, 64], [24, 36]), settings=EncodeSettings("ultrafast"),
                          ffmpeg=str(flaky), workdir=work)
    assert ladder.partial and "simulated encoder crash" in ladder.error
    assert len(ladder.renditions) == 2
    assert leftovers(work) == []
    from contrique_video.runs.plot import plot_ladder

    paths = save(ladder, tmp_path / "out", plot=plot_ladder)
    assert [p.name for p in paths] == ["ladder.partial.csv", "ladder.partial.json", "ladder.partial.png"]
    record = json.loads(paths[1].read_text())
    assert record["partial"] is True and len(record["renditions"]) == 2


def test_cli_writes_csv_json_and_plot_with_the_model(clip, tmp_path):
    res = CliRunner().invoke(main, ["-q", "ladder", str(clip), "--heights", "90,64", "--crf", "24,40", "--frames", "1",
                                    "--preset", "ultrafast", "-o", str(tmp_path), "--rungs", "2", "--format", "json"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    table = pd.read_csv(tmp_path / "ladder.csv")
    assert list(table.columns) == ["height", "width", "crf", "bytes", "kbps", "score", "p5", "on_hull", "rung"]
    assert len(table) == 4 and 1 <= table["rung"].sum() <= 2
    record = json.loads((tmp_path / "ladder.json").read_text())
    assert record["display"] == [160, 90] and record["head"] == builtin_card()["default_head"] and record["partial"] is False
    assert (tmp_path / "ladder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(res.stdout) == record  # --format json: the same object, on one line (JSON Lines)
    assert len(res.stdout.splitlines()) == 1


def test_hook_scores_a_segment_at_the_display_size(clip, tmp_path):
    from contrique_video.encoding.encode import encode
    from contrique_video.encoding.hooks import score_rendition

    seg = encode(clip, tmp_path / "seg.mkv", "libx264", 30, height=64, preset="ultrafast")
    stub, seen = StubScorer(), []
    record = score_rendition(seg.path, display=[320, 180], scorer=stub, workdir=tmp_path, inspect=seen.append)
    assert stub.sizes == [(320, 180)] and seen[0].name == "display.mkv"
    assert (record["width"], record["height"], record["display"]) == (114, 64, [320, 180])
    assert record["bytes"] == seg.bytes and record["kbps"] == pytest.approx(seg.kbps)
    assert record["file"] == str(seg.path) and leftovers(tmp_path) == ["seg.mkv"]


class InterruptedScorer(StubScorer):
    """Ctrl-C (or SIGTERM, as the CLI turns it into an exception) while the second rendition is scored."""

    def __init__(self, stop: type[BaseException]):
        super().__init__()
        self.stop = stop

    def score(self, path, sampling=None):
        if len(self.sizes) == 1:
            raise self.stop()
        return super().score(path, sampling)


@pytest.mark.parametrize("stop, code, word", [(KeyboardInterrupt, 130, "interrupted"), (Terminated, 143, "terminated")])
def test_ctrl_c_writes_the_finished_renditions_as_partial(clip, tmp_path, monkeypatch, caplog, stop, code, word):
    import logging

    import contrique_video.cli.encoding as cli

    monkeypatch.setattr(cli, "open_scorer", lambda model: InterruptedScorer(stop))
    work = tmp_path / "work"
    work.mkdir()
    res = CliRunner().invoke(main, ["-q", "ladder", str(clip), "--heights", "90", "--crf", "24,32,40", "--preset",
                                    "ultrafast", "--out", str(tmp_path / "out"), "--workdir", str(work)],
                             catch_exceptions=False)
    assert res.exit_code == code, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ladder.partial.csv", "ladder.partial.json",
                                                                   "ladder.partial.png"]
    record = json.loads((tmp_path / "out" / "ladder.partial.json").read_text())
    assert record["partial"] is True and [r["crf"] for r in record["renditions"]] == [24]
    assert record["error"] == f"stopped by {stop.__name__}"
    assert res.stdout.splitlines()[0].split() == ["height", "width", "crf", "kbps", "score", "mark"]
    assert len(res.stdout.splitlines()) == 2  # the header and the one finished rendition
    err = res.stderr.strip().splitlines()
    assert err[-1].endswith(f"{word}: 1 finished renditions kept as partial in " + str(tmp_path / "out"))
    deprecated = [r for r in caplog.records if r.levelno == logging.WARNING and "--out is deprecated" in r.message]
    assert len(deprecated) == 1  # the old --out still works, with one warning
    assert leftovers(work) == []


def test_out_and_output_together_is_a_usage_error(clip, tmp_path):
    res = CliRunner().invoke(main, ["ladder", str(clip), "-o", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "give -o/--output once" in res.stderr


def test_progress_bar_counts_renditions_with_an_eta(clip, tmp_path, monkeypatch):
    import contrique_video.cli.encoding as cli

    monkeypatch.setattr(cli, "open_scorer", lambda model: StubScorer())
    res = CliRunner().invoke(main, ["ladder", str(clip), "--heights", "90", "--crf", "30,40", "--preset", "ultrafast",
                                    "-o", str(tmp_path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "ladder:" in res.stderr and "1/2 [" in res.stderr and "rendition/s]" in res.stderr  # [elapsed<eta, rate]
    assert "90p crf 30: score" in res.stderr
    quiet = CliRunner().invoke(main, ["-q", "ladder", str(clip), "--heights", "90", "--crf", "30", "--preset",
                                      "ultrafast", "-o", str(tmp_path)], catch_exceptions=False)
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_format_csv_prints_one_row_per_rendition(clip, tmp_path, monkeypatch):
    import io

    import pandas as pd

    import contrique_video.cli.encoding as cli

    monkeypatch.setattr(cli, "open_scorer", lambda model: StubScorer())
    res = CliRunner().invoke(main, ["-q", "ladder", str(clip), "--heights", "90", "--crf", "30,40", "--preset",
                                    "ultrafast", "-o", str(tmp_path), "--format", "csv"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(io.StringIO(res.stdout))
    assert list(table["crf"]) == [30, 40]
    assert list(table.columns) == list(pd.read_csv(tmp_path / "ladder.csv").columns)


def test_ladder_without_matplotlib_writes_the_tables_and_says_once_that_the_plot_is_skipped(clip, tmp_path, monkeypatch,
                                                                                           caplog):
    import sys

    import contrique_video.cli.encoding as cli

    monkeypatch.setattr(cli, "open_scorer", lambda model: StubScorer())
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an uninstalled package looks like to import
    res = CliRunner().invoke(main, ["-q", "ladder", str(clip), "--heights", "90", "--crf", "30,40", "--preset",
                                    "ultrafast", "-o", str(tmp_path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ladder.csv", "ladder.json"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "ladder.png needs matplotlib, which is not installed: pip install 'contrique-video[plots]'; it is skipped"]

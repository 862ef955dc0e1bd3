"""The shipped model: it works with no options and no network, is what its card says, and is deterministic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from contrique_video.api import builtin_card, builtin_weights
from contrique_video.cli import main
from contrique_video.head import resolve_head

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "sample.mp4"


def test_builtin_files_match_the_card():
    card = builtin_card()
    path = builtin_weights()
    assert path is not None and path.stat().st_size < 50 * 1024 * 1024
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["weights_sha256"]
    head = resolve_head("clive")
    assert head.features == card["id"]
    assert head.dim == 4096 + (36 if card["nss"] else 0)
    assert head.higher_is_better and head.range == (0.0, 100.0)


@pytest.mark.skipif(not SAMPLE.exists(), reason="bundled sample missing")
def test_score_with_no_options_is_deterministic():
    runs = [CliRunner().invoke(main, ["-q", "score", str(SAMPLE), "--frames", "3", "--format", "json"]) for _ in range(2)]
    assert all(r.exit_code == 0 for r in runs), runs[0].output
    assert runs[0].stdout == runs[1].stdout
    record = json.loads(runs[0].stdout)
    assert record["model"] == builtin_card()["id"] and record["head"] == "clive"
    assert record["frames_scored"] == 3 and -20 < record["score"] < 120

"""The model is resolved once per Scorer: one score run reads the card once, hashes the weights once and checks
the head once, whichever backend runs it (the backends and their caches are handed the resolved model)."""

from __future__ import annotations

import collections
import functools
import sys

import pytest

import contrique_video
import contrique_video.files as files_mod
import contrique_video.models.card as card_mod
from contrique_video.api import Scorer
from contrique_video.models.head import LinearHead
from media import make_clip


@pytest.fixture
def counts(monkeypatch):
    """Calls of read_card, sha256_file and the head's load and fit check, wherever a module imported them."""
    seen = collections.Counter()

    def counted(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            seen[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for name, fn in {"read_card": card_mod.read_card, "sha256_file": files_mod.sha256_file}.items():
        wrapper = counted(name, fn)
        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith(contrique_video.__name__) and getattr(module, name, None) is fn:
                monkeypatch.setattr(module, name, wrapper)
    monkeypatch.setattr(LinearHead, "check_fits", counted("check_fits", LinearHead.check_fits))
    monkeypatch.setattr(LinearHead, "load", classmethod(counted("load_head", LinearHead.load.__func__)))
    return seen


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_one_score_run_reads_the_card_hashes_the_weights_and_checks_the_head_once(tmp_path, counts, backend):
    pytest.importorskip(backend)
    clip = make_clip(tmp_path / "c.mp4", size=(96, 64), frames=3)
    result = Scorer(backend=backend).score(clip)
    assert result.frames_scored == 3
    assert dict(counts) == {"read_card": 1, "sha256_file": 1, "load_head": 1, "check_fits": 1}


def test_a_resolved_model_is_passed_down_as_it_is(counts):
    from contrique_video.models import ResolvedModel, resolve_model

    model = resolve_model("builtin-v4")
    assert isinstance(model, ResolvedModel) and resolve_model(model) is model
    assert model.digest == model.digest and model.preprocess == model.card.preprocess
    assert dict(counts) == {"read_card": 1, "sha256_file": 1}


def test_one_cli_score_run_resolves_the_model_once(tmp_path, counts):
    """The CLI builds typed settings, resolves them once at the top and hands the Scorer down: one card read,
    one weights hash, one head load and one fit check in a whole `score` run, outputs included."""
    from click.testing import CliRunner

    from contrique_video.cli import main

    clip = make_clip(tmp_path / "c.mp4", size=(96, 64), frames=3)
    res = CliRunner().invoke(main, ["-q", "score", str(clip), "--backend", "torch", "--frames", "2", "--format", "json",
                                    "-o", str(tmp_path / "s.jsonl"), "--csv", str(tmp_path / "f.csv")])
    assert res.exit_code == 0, res.output
    assert dict(counts) == {"read_card": 1, "sha256_file": 1, "load_head": 1, "check_fits": 1}


def test_settings_travel_resolved_and_picklable(counts):
    """What a Dask worker gets: the resolved model and head, pickled; unpickling reads and hashes nothing."""
    import pickle

    from contrique_video.runs.dask import task_settings
    from contrique_video.runs.settings import ScorerSettings

    settings = task_settings(ScorerSettings(backend="torch"))
    assert settings.device == "cpu"
    copy = pickle.loads(pickle.dumps(settings))
    assert copy.weights.id == settings.weights.id and copy.head.name == settings.head.name
    assert dict(counts) == {"read_card": 1, "sha256_file": 1, "load_head": 1}
    assert task_settings(None).device == "auto"

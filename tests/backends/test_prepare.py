"""The per-machine cache a first run fills: prepared once, shared by processes, checked before use."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from checkpoints import random_official_checkpoint

from contrique_video import files
from contrique_video.backends import cpu as cpu_mod
from contrique_video.backends import open_backend
from contrique_video.backends.openvino import cached_ir, ir_path
from contrique_video.models import card as card_mod

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRIQUE_VIDEO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def r18(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("r18") / "r18.pt"
    random_official_checkpoint(path, arch="resnet18")
    return path


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = files.atomic_write(tmp_path / "x.json", "one")
    files.atomic_write(path, b"two")
    assert path.read_text() == "two" and [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_writers_of_one_file_never_share_a_temporary(tmp_path):
    """Two writers at once (two processes filling one cache) each get their own temporary, created exclusively."""
    target = tmp_path / "x.onnx"
    with files.atomic_path(target) as first, files.atomic_path(target) as second:
        assert first != second and first.is_file() and second.is_file()
        first.write_bytes(b"one")
        second.write_bytes(b"two")
    assert target.read_bytes() == b"one" and [p.name for p in tmp_path.iterdir()] == ["x.onnx"]


def test_digest_is_remembered_by_size_and_mtime(fresh_cache, tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"a" * 1000)
    first = files.sha256_file(weights, remember=True)
    assert first == files.sha256_file(weights) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert len(list((fresh_cache / "digests").iterdir())) == 1
    stamp = weights.stat()
    weights.write_bytes(b"c" * 1000)  # same size; put the modification time back: the memo answers unread
    os.utime(weights, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert files.sha256_file(weights, remember=True) == first
    weights.write_bytes(b"b" * 1001)  # another size: hashed again
    assert files.sha256_file(weights, remember=True) == hashlib.sha256(b"b" * 1001).hexdigest()


def test_a_card_is_parsed_once_while_unchanged(tmp_path):
    from contrique_video.api import builtin_weights

    card = tmp_path / "c.json"
    card.write_text(builtin_weights().read_text().replace('"builtin.json"', '"x"'))
    first = card_mod.read_card(card)
    assert card_mod.read_card(card) is first
    card.write_text(card.read_text().replace('"id": "builtin-v4"', '"id": "builtin-v4-copy"'))
    assert card_mod.read_card(card).id == "builtin-v4-copy"


def test_threads_do_not_import_torch(monkeypatch):
    assert cpu_mod.inference_threads(3) == 3
    monkeypatch.setitem(sys.modules, "torch", None)  # "torch not loaded" is what matters: no import is tried
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_mod.inference_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_mod.inference_threads() == 0  # the runtime's own default


def test_openvino_ir_is_made_once_checked_and_remade(fresh_cache, r18, caplog):
    with caplog.at_level(logging.INFO, logger="contrique_video"):
        path = cached_ir(r18)
    assert path == ir_path(r18) and path.with_suffix(".bin").is_file()
    made = [r.getMessage() for r in caplog.records if r.getMessage().startswith("prepared")]
    assert len(made) == 1 and made[0].startswith("prepared r18.pt for OpenVINO in ") and "\n" not in made[0]
    stamp = path.stat().st_mtime_ns
    assert cached_ir(r18) == path and path.stat().st_mtime_ns == stamp  # used as it is
    frame = np.random.default_rng(0).integers(0, 255, (72, 96, 3), dtype=np.uint8)
    want = open_backend(r18, "torch", "fp32")([frame])
    np.testing.assert_allclose(open_backend(r18, "openvino", "fp32")([frame]), want, rtol=1e-4, atol=1e-4)
    path.write_text("<damaged")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="contrique_video"):
        cached_ir(r18)
    assert any("remaking it" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(open_backend(r18, "openvino", "fp32")([frame]), want, rtol=1e-4, atol=1e-4)


def test_processes_filling_one_cache_at_once_prepare_once(fresh_cache, r18):
    """Two processes asking for the same model at once: one converts it, the other waits and uses it."""
    script = ("import logging, sys; logging.basicConfig(level=logging.INFO, format='%(message)s'); "
              "from contrique_video.backends.openvino import cached_ir; print(cached_ir(sys.argv[1]))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(r18)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert len({o.strip() for o, _ in outs}) == 1
    assert sum(e.count("prepared r18.pt for OpenVINO") for _, e in outs) == 1
    leftovers = [p.name for p in Path(outs[0][0].strip()).parent.iterdir() if p.suffix not in (".xml", ".bin", ".lock")]
    assert not leftovers


def test_bench_autotune_measures_and_keeps_the_choice(fresh_cache, monkeypatch):
    from click.testing import CliRunner

    from contrique_video import backends, models
    from contrique_video.backends import autotune
    from contrique_video.cli import main

    monkeypatch.setattr(autotune, "measure", lambda open_path, paths: {p: 0.1 if p == ("torch", "fp32") else 0.3
                                                                          for p in paths})
    result = CliRunner().invoke(main, ["bench", "--autotune"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("backend auto: torch fp32 (fastest on a 1280x720 frame")
    assert backends.auto_choice("cpu", models.model_path("builtin-v4")) == ("torch", "fp32")  # kept for auto

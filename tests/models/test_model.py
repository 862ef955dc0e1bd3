"""The encoder must be exactly CONTRIQUE's inference path: checked against an independent functional
reimplementation that reads the official key layout straight from the state_dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from contrique_video.backends.pytorch import TorchBackend
from contrique_video.errors import ModelError
from contrique_video.models.contrique import Contrique, load_weights

from checkpoints import random_official_checkpoint, reference_features


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "CONTRIQUE_checkpoint25.tar"
    return path, random_official_checkpoint(path)


def test_official_layout_counts():
    model = Contrique("resnet50")
    assert len(model.state_dict()) == 330
    assert sum(p.numel() for p in model.parameters()) == 27_968_832


def test_features_match_reference_path(official):
    path, state = official
    rng = np.random.default_rng(1)
    rgb = (rng.random((100, 134, 3)) * 255).astype(np.uint8)  # odd width: W//2 rounding matters
    ours = TorchBackend(load_weights(path))([rgb])[0]
    ref = reference_features(state, Image.fromarray(rgb))
    assert ours.shape == (4096,)
    assert np.max(np.abs(ours - ref)) <= 1e-5
    assert np.isclose(np.linalg.norm(ours[:2048]), 1.0, atol=1e-5)


def test_batching_does_not_change_features(official):
    path, _ = official
    rng = np.random.default_rng(2)
    frames = [(rng.random((80, 96, 3)) * 255).astype(np.uint8) for _ in range(3)]
    backend = TorchBackend(load_weights(path))
    together = backend(frames)
    alone = np.stack([backend([f])[0] for f in frames])
    assert np.max(np.abs(together - alone)) <= 1e-5


def test_resnet18_checkpoint_roundtrip(tmp_path):
    random_official_checkpoint(tmp_path / "r18.pt", arch="resnet18")
    model = load_weights(tmp_path / "r18.pt")
    assert model.arch == "resnet18" and model.feature_dim == 512


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.pop("projector.0.weight"), "do not match"),
        (lambda s: s.__setitem__("encoder.0.weight", torch.zeros(64, 3, 5, 5)), "do not match"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(1)), "do not match"),
    ],
)
def test_bad_checkpoints_are_refused(tmp_path, official, mutate, message):
    state = dict(official[1])
    mutate(state)
    torch.save(state, tmp_path / "bad.tar")
    with pytest.raises(ModelError, match=message):
        load_weights(tmp_path / "bad.tar")


def test_wrapped_or_garbage_checkpoints_are_refused(tmp_path):
    torch.save({"state_dict": {"a": torch.zeros(1)}, "epoch": 3}, tmp_path / "wrapped.tar")
    (tmp_path / "garbage.tar").write_bytes(b"not a checkpoint")
    for name in ("wrapped.tar", "garbage.tar", "missing.tar"):
        with pytest.raises(ModelError) as err:
            load_weights(tmp_path / name)
        assert "\n" not in str(err.value)

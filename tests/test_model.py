"""The encoder must be exactly CONTRIQUE's inference path: checked against an independent functional
reimplementation that reads the official key layout straight from the state_dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from contrique_video.backend import TorchBackend
from contrique_video.errors import ModelError
from contrique_video.model import Contrique, load_weights


def random_official_checkpoint(path, seed=0, arch="resnet50"):
    """A checkpoint with the official layout and non-trivial BN statistics, saved as a plain state_dict."""
    torch.manual_seed(seed)
    state = Contrique(arch).state_dict()
    for k, v in state.items():
        if k.endswith("running_mean"):
            state[k] = torch.randn_like(v) * 0.1
        elif k.endswith("running_var"):
            state[k] = torch.rand_like(v) + 0.5
        elif k.endswith(".weight") and v.ndim == 1:  # BN gamma (some are zero-initialised)
            state[k] = torch.rand_like(v) + 0.5
        elif k.endswith(".bias"):
            state[k] = torch.randn_like(v) * 0.1
    torch.save(state, path)
    return state


def small_model_with_head(folder, head_seed: int = 0) -> None:
    """``folder/r18.pt`` (a random ResNet-18 checkpoint) and ``folder/head.json`` (a random head for it):
    a cheap model for tests that score many files."""
    from contrique_video.head import LinearHead

    random_official_checkpoint(folder / "r18.pt", arch="resnet18")
    LinearHead(weights=np.random.default_rng(head_seed).normal(size=1024), intercept=50.0, name="t",
               features="weights:r18.pt", trained_on="random", scale="MOS", range=(0, 100),
               higher_is_better=True).save(folder / "head.json")


def _bn(x, s, p):
    return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"], s[p + ".bias"], False, 0.0, 1e-5)


def reference_features(state, pil: Image.Image) -> np.ndarray:
    """The official demo's path, written out by hand: ToTensor, PIL half-size resize, ResNet-50 trunk, GAP, L2."""

    def trunk(x):
        x = F.relu(_bn(F.conv2d(x, state["encoder.0.weight"], stride=2, padding=3), state, "encoder.1"))
        x = F.max_pool2d(x, 3, 2, 1)
        for layer in range(4, 8):
            b = 0
            while f"encoder.{layer}.{b}.conv1.weight" in state:
                p = f"encoder.{layer}.{b}"
                stride = 2 if (b == 0 and layer > 4) else 1
                out = F.relu(_bn(F.conv2d(x, state[p + ".conv1.weight"]), state, p + ".bn1"))
                out = F.relu(_bn(F.conv2d(out, state[p + ".conv2.weight"], stride=stride, padding=1), state, p + ".bn2"))
                out = _bn(F.conv2d(out, state[p + ".conv3.weight"]), state, p + ".bn3")
                if p + ".downsample.0.weight" in state:
                    x = _bn(F.conv2d(x, state[p + ".downsample.0.weight"], stride=stride), state, p + ".downsample.1")
                x = F.relu(out + x)
                b += 1
        return x

    def feat(img):
        t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        h = trunk(t).mean(dim=(2, 3))
        return (h / h.norm(dim=1, keepdim=True)).numpy()[0]

    w, h = pil.size
    with torch.no_grad():
        return np.concatenate([feat(pil), feat(pil.resize((w // 2, h // 2)))])


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

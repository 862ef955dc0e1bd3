"""Checkpoints for tests: random weights in the official CONTRIQUE layout, a cheap model with a head, and an
independent functional reimplementation of the official inference path to check features against."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from contrique_video.models.contrique import Contrique
from contrique_video.models.head import LinearHead


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


def interrupt_on(monkeypatch, call: int) -> list[str]:
    """Make the scorer raise KeyboardInterrupt (Ctrl-C) when it is asked for its ``call``-th input."""
    from contrique_video.api import Scorer

    real, calls = Scorer.score, []

    def score(self, path, **kwargs):
        calls.append(str(path))
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(self, path, **kwargs)

    monkeypatch.setattr(Scorer, "score", score)
    return calls

"""The backend registry drives every list of backends: --backend, info, bench's and auto's candidates."""

from __future__ import annotations

import numpy as np
import pytest

from contrique_video import backends, models
from contrique_video.api import builtin_card
from contrique_video.backends import bench
from contrique_video.backends import registry as registry_mod
from contrique_video.backends.base import Backend
from contrique_video.backends.registry import REGISTRY, register_backend
from contrique_video.errors import UnsupportedError

BUILTIN_ID = builtin_card()["id"]


class Constant(Backend):
    name = "constant"

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.ones((len(batch), self.scale_dim), np.float32)


@pytest.fixture
def constant_backend(monkeypatch):
    """A backend added the way a new one would be: one registered opener."""
    monkeypatch.setattr(registry_mod, "REGISTRY", dict(REGISTRY))
    monkeypatch.setattr(backends, "REGISTRY", registry_mod.REGISTRY)
    opened = []

    @register_backend("constant", requires="numpy", precisions={"cpu": ("fp32",)})
    def open_constant(model, choice):
        opened.append((model.path.name, choice.precision, model.preprocess))
        return Constant(4, model.preprocess)

    return opened


def test_backends_and_precisions_are_the_registry_s():
    assert backends.BACKENDS == ("auto", "torch", "torch-compile", "onnxruntime", "openvino", "tensorrt")
    assert set(backends.PRECISIONS) == {"auto", "fp32", "bf16", "fp16", "int8"}
    from contrique_video.cli import main

    choices = {p.name: p.type.choices for c in map(lambda n: main.get_command(None, n), main.list_commands(None)) for p in c.params if p.name == "backend"}
    assert choices and all(tuple(c) == backends.BACKENDS for c in choices.values())


def test_a_registered_backend_is_offered_everywhere(constant_backend, monkeypatch):
    assert ("constant", "fp32") in backends.paths("cpu") and ("constant", "fp32") in backends.auto_paths()
    assert "constant (fp32 on CPU)" in backends.available(cuda=False)
    monkeypatch.setattr(backends, "auto_choice", lambda device, weights=None, threads=None: ("torch", "fp32"))
    monkeypatch.setattr(bench, "auto_choice", backends.auto_choice)
    assert ("constant", "fp32") in bench.default_candidates(models.model_path(BUILTIN_ID), None)
    encoder = backends.open_backend(BUILTIN_ID, "constant")  # "auto" precision: the spec's default
    assert constant_backend[0][:2] == ("builtin.json", "fp32")
    assert constant_backend[0][2] == models.get_card(BUILTIN_ID).preprocess  # the card's preprocessing
    assert encoder([np.zeros((64, 80, 3), np.uint8)]).shape == (1, 8)
    with pytest.raises(UnsupportedError, match="the constant backend on cpu supports precision fp32, not int8"):
        backends.open_backend(BUILTIN_ID, "constant", "int8")
    with pytest.raises(UnsupportedError, match="runs on CPU only"):
        backends.open_backend(BUILTIN_ID, "constant", device="cuda")


def test_tensorrt_is_offered_on_cuda_only():
    assert REGISTRY["tensorrt"].offered("cpu") == () and REGISTRY["tensorrt"].offered("cuda") == ("fp16", "fp32")
    with pytest.raises(UnsupportedError, match="runs on CUDA only, not on 'cpu'; use --device cuda"):
        backends.open_backend(BUILTIN_ID, "tensorrt")

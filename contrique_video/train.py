"""Self-supervised CONTRIQUE training from plain image folders, on CPU or CUDA.

Two objectives share one data pipeline:

* ``contrastive``: the official recipe. Two views of each image, one at full and one at half scale,
  random crops, a random colour option (grayscale, LAB, HSV, local-mean-subtracted, none) and flip per
  view; the encoder map is pooled on a 2x2 grid, each patch vector L2-normalised and projected, and a
  multi-positive NT-Xent (SupCon form, temperature 0.1) treats patches of the same synthetic class
  (distortion type and level, any content) or of the same authentic image as positives.
* ``classify``: the paper's auxiliary task stated directly, cross-entropy over (distortion type, level)
  plus a "pristine" class, which learns more per sample when batches are small.

Every batch is a pure function of (seed, batch index), so a resumed run continues the same sequence.
Checkpoints: ``last.pt`` (model, optimiser, step; loadable with ``weights_only=True``) and ``best.pt``,
a plain state_dict in the layout ``--weights`` reads.
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

from . import distortions
from .backend import TorchBackend
from .errors import InputError
from .fit import evaluate, read_mos
from .model import Contrique, load_weights

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
        self.authentic = authentic if cfg.objective == "contrastive" else []
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
        option = COLOUR_OPTIONS[rng.integers(len(COLOUR_OPTIONS))] if self.cfg.objective == "contrastive" else "none"
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


def patch_projections(model: Contrique, x: torch.Tensor) -> torch.Tensor:
    """Encoder map -> 2x2 grid -> each patch L2-normalised -> projector."""
    h = F.adaptive_avg_pool2d(model.encoder(x), 2)  # B, C, 2, 2
    patches = F.normalize(h.flatten(2).transpose(1, 2).reshape(-1, h.shape[1]), dim=1)
    return model.projector(patches)


# ---------------------------------------------------------------- loop
def lr_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))


def heldout_features(model: Contrique, images: list[Path], device: str) -> np.ndarray:
    backend = TorchBackend(model, device=device, precision="fp32")
    feats = np.concatenate([backend([load_rgb(p)]) for p in images])
    model.train()
    return feats


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Run (or resume) training; returns the log of held-out evaluations."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.objective not in ("contrastive", "classify"):
        raise InputError(f"unknown objective {cfg.objective!r}; choose contrastive or classify")
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
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)
    model = Contrique(cfg.arch, zero_init_residual=True)
    if cfg.init:  # fine-tune from a checkpoint (e.g. the built-in model) instead of random weights
        init = load_weights(cfg.init)
        if init.arch != cfg.arch:
            raise InputError(f"--init {cfg.init} is a {init.arch}, not a {cfg.arch}")
        model.encoder.load_state_dict(init.encoder.state_dict())
    model = model.to(device)
    data = BatchMaker(cfg, pristine, authentic)
    classifier = nn.Linear(model.feature_dim, data.num_synthetic_classes).to(device)
    params = list(model.parameters()) + (list(classifier.parameters()) if cfg.objective == "classify" else [])
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    start, history, best = 0, [], -1.0
    last = out / "last.pt"
    if resume and last.exists():
        state = torch.load(last, map_location=device, weights_only=True)
        runtime = {"workers", "device", "eval_every"}  # may change between sessions without changing results
        if {k: v for k, v in state["config"].items() if k not in runtime} != {
            k: v for k, v in asdict(cfg).items() if k not in runtime
        }:
            raise InputError(f"{last} was written with other settings; use the same options or a new --out")
        model.load_state_dict(state["model"])
        classifier.load_state_dict(state["classifier"])
        opt.load_state_dict(state["optimizer"])
        start, history = state["step"], json.loads(state["history"])
        best = max([h["srcc"] for h in history], default=-1.0)
        log.info("resumed from %s at step %d", last, start)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    model.train()
    model = model.to(memory_format=torch.channels_last)
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
    t0 = time.time()
    step = start
    for step, (full, half, labels) in enumerate(loader, start=start):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        full = full.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        half = half.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        labels = labels.to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            x = torch.cat([full, half])
            if cfg.objective == "contrastive":
                z = patch_projections(model, x)
                patch_labels = labels.repeat(2).repeat_interleave(4)
                loss = supcon_loss(z, patch_labels, cfg.temperature)
            else:
                logits = classifier(model.encoder(x).mean(dim=(2, 3)))
                loss = F.cross_entropy(logits.float(), labels.repeat(2))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            record = {"step": done, "loss": float(loss.item()), "seconds": round(time.time() - t0, 1)}
            if heldout:
                feats = heldout_features(model, heldout, cfg.device)
                res = evaluate(feats, heldout_mos)
                record.update(srcc=res["srcc"], plcc=res["plcc"], n_heldout=len(heldout))
                if res["srcc"] > best:
                    best = res["srcc"]
                    export_weights(model, out / "best.pt")
            history.append(record)
            log.info("step %d: %s", done, json.dumps(record))
            tmp = out / "last.pt.tmp"
            torch.save(
                {
                    "model": model.state_dict(),
                    "classifier": classifier.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": done,
                    "config": asdict(cfg),
                    "history": json.dumps(history),
                },
                tmp,
            )
            tmp.replace(last)
            (out / "history.json").write_text(json.dumps(history, indent=2))
    bar.close()
    if not heldout:
        export_weights(model, out / "best.pt")
    return {"history": history, "best_srcc": best, "steps": step + 1}


def export_weights(model: Contrique, path: Path, half: bool = False, projector: bool = True) -> None:
    """A plain state_dict in the official layout, written atomically; ``half`` and no ``projector`` to ship."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items() if projector or not k.startswith("projector.")}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)

"""The networks being trained: how each architecture is built and initialised, which parts are frozen, and
how trained weights are exported in the layouts the scorer loads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from contrique_video.errors import InputError
from contrique_video.files import atomic_path
from contrique_video.models.contrique import Contrique, load_weights, projector

if TYPE_CHECKING:
    from contrique_video.training.train import TrainConfig

#: Training architectures: the CONTRIQUE ResNets and the EfficientNet-Lite trunks (``--arch`` -> variant).
LITE_ARCHS = {"efficientnet-lite0": "lite0", "efficientnet-lite1": "lite1", "efficientnet-lite2": "lite2"}
ARCHS = ("resnet18", "resnet34", "resnet50", *LITE_ARCHS)


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


def export_trunk(model: nn.Module, path: Path) -> None:
    """A Lite trunk as a plain state_dict that ``EfficientNetLite(variant).load_state_dict`` takes strictly."""
    state = {k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def export_weights(model: nn.Module, path: Path, half: bool = False, projector: bool = True) -> None:
    """A plain state_dict in the official layout, written atomically; ``half`` and no ``projector`` to ship.

    A Lite model exports its trunk alone, in ``EfficientNetLite``'s key layout (see :func:`export_trunk`).
    """
    if isinstance(model, LiteTrainee):
        export_trunk(model, path)
        return
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items() if projector or not k.startswith("projector.")}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)

"""The networks being trained: built by their family's trainee (models/families.py), which parts are frozen, and
how trained weights are exported in the layouts the scorer loads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from contrique_video.errors import InputError
from contrique_video.files import atomic_path
from contrique_video.models.efficientnet_lite import LiteTrainee
from contrique_video.models.families import create_trainee

if TYPE_CHECKING:
    from contrique_video.training.train import TrainConfig


def build_model(cfg: TrainConfig) -> nn.Module:
    """The network to train, with its initial weights (``cfg.init``): its family's trainee (models/families.py)."""
    return create_trainee(cfg.arch, cfg)


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

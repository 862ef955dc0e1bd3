"""The networks being trained: built by their family's trainee (models/families.py), which parts are frozen, and
how trained weights are exported in the layouts the scorer loads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from contrique_video.files import atomic_path
from contrique_video.models.families import create_trainee
from contrique_video.models.trainee import Trainee

if TYPE_CHECKING:
    from contrique_video.training.train import TrainConfig


def build_model(cfg: TrainConfig) -> Trainee:
    """The network to train, with its initial weights (``cfg.init``): its family's trainee (models/families.py)."""
    model = create_trainee(cfg.arch, cfg)
    if not isinstance(model, Trainee):
        raise TypeError(f"the trainee of {cfg.arch} is a {type(model).__name__}, not a models.trainee.Trainee")
    return model


def frozen_modules(model: Trainee, cfg: TrainConfig) -> list[nn.Module]:
    """The encoder parts ``freeze_stages`` keeps fixed (the trainee says which)."""
    return model.frozen_parts(cfg.freeze_stages)


def set_train_mode(model: Trainee, cfg: TrainConfig) -> None:
    """Train mode, except BatchNorm of the encoder with ``bn="frozen"`` and of frozen stages (eval mode)."""
    model.train()
    if cfg.bn == "frozen":
        for m in model.encoder.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    for part in frozen_modules(model, cfg):
        part.eval()


def export_weights(model: Trainee, path: Path, half: bool = False, projector: bool = True) -> None:
    """The trainee's exported state_dict (:meth:`Trainee.export_state`: the layout ``--weights`` reads), written
    atomically; ``half`` and no ``projector`` to ship."""
    with atomic_path(path) as tmp:
        torch.save(model.export_state(half, projector), tmp)

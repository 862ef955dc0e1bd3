"""What ``train`` asks of the network it trains. A family's trainee (``Family.trainee`` in models/families.py)
subclasses :class:`Trainee` and overrides what differs, so training never asks which family a network is."""

from __future__ import annotations

import torch
from torch import nn

from contrique_video.errors import InputError


class Trainee(nn.Module):
    """A network with ``encoder`` (frames to a feature map), ``projector`` (the contrastive head) and
    ``feature_dim``, whose ``forward`` gives one scale's scoring feature.

    ``standardize``: the held-out evaluation z-scores the features (a standardised Ridge), for features of very
    different spread. ``cosine_classifier``: the classify objective bounds its logits (a cosine classifier).
    ``keep_evaluated``: every evaluated network's export is kept under ``trunks/`` (a learning curve of weights).
    """

    encoder: nn.Module
    projector: nn.Module
    standardize: bool = False
    cosine_classifier: bool = False
    keep_evaluated: bool = False

    def train_map(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map the training objectives see."""
        return self.encoder(x)

    def scoring_module(self) -> nn.Module:
        """The one-scale module the held-out evaluation scores with (the scorer's layout for these weights)."""
        return self

    def frozen_parts(self, stages: int) -> list[nn.Module]:
        """The parts ``--freeze-stages stages`` keeps fixed; a network without stages refuses it."""
        if stages:
            raise InputError(f"--freeze-stages is not offered for {type(self).__name__}")
        return []

    def export_state(self, half: bool = False, projector: bool = True) -> dict[str, torch.Tensor]:
        """The plain state_dict ``--weights`` (through the family's ``load``) reads: fp16 with ``half``, without
        the projector (not needed to score) unless ``projector``."""
        return {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
                for k, v in self.state_dict().items() if projector or not k.startswith("projector.")}


__all__ = ["Trainee"]

"""A small quality branch beside a frozen EfficientNet-Lite trunk (Re-IQA's content + quality split, on one trunk).

ImageNet features see content well but barely see colour shifts, exposure changes or noise on smooth areas
(the degradation check's misses). The branch reads one early stage's map of the frozen trunk, where those
changes are still visible, through three small convolutions, and is pooled like the trunk (spatial mean and
standard deviation). Only the branch is trained (``training/branch.py``); the trunk keeps its ImageNet weights,
so the content features the heads were fit on do not move.
"""

from __future__ import annotations

import torch
from torch import nn


class QualityBranch(nn.Module):
    """Convolutions on the trunk's stage-``tap`` output, pooled to mean and std: ``N x C x H x W -> N x 2 * 2w``."""

    def __init__(self, in_channels: int, width: int = 64, tap: int = 2):
        super().__init__()
        self.tap = tap
        self.register_buffer("tap_stage", torch.tensor(tap))  # saved with the weights, so a state_dict says its tap
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.feature_dim = 4 * width

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        f = self.body(fmap).float()
        return torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3), unbiased=False)], dim=1)


def branch_from_state(state: dict[str, torch.Tensor]) -> QualityBranch:
    """An untrained branch of the shape a branch state_dict gives (its tap and width)."""
    width, cin = state["body.0.weight"].shape[:2]
    return QualityBranch(cin, width, int(state["tap_stage"].item()))


__all__ = ["QualityBranch", "branch_from_state"]

"""A small quality branch beside a frozen EfficientNet-Lite trunk (Re-IQA's content + quality split, on one trunk).

ImageNet features see content well but barely see colour shifts, exposure changes or noise on smooth areas
(the degradation check's misses). The branch reads one early stage's map of the frozen trunk, where those
changes are still visible, through three small convolutions, and is pooled like the trunk (spatial mean and
standard deviation). With ``pixel_stride``, the branch's first layer also reads the input pixels themselves, cut into
``pixel_stride``-square patches that line up with the tapped map: the trunk's early convolutions mix chroma into
luma-dominated channels and lose most of it, so chroma blur and colour shifts are nearly invisible in their maps
(issue #12's check). Only the branch is trained (``training/branch.py``); the trunk keeps its ImageNet weights,
so the content features the heads were fit on do not move.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QualityBranch(nn.Module):
    """Convolutions on the trunk's stage-``tap`` output, pooled to mean and std: ``N x C x H x W -> N x 2 * 2w``."""

    def __init__(self, in_channels: int, width: int = 64, tap: int = 2, pixel_stride: int = 0):
        super().__init__()
        self.tap = tap
        self.register_buffer("tap_stage", torch.tensor(tap))  # saved with the weights, so a state_dict says its tap
        self.pixels = nn.Conv2d(3, width, pixel_stride, stride=pixel_stride, bias=False) if pixel_stride else None
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.feature_dim = 4 * width

    def forward(self, fmap: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """``image`` (N x 3 x H x W, RGB in [0, 1]) is needed when the branch reads pixels."""
        if self.pixels is None:
            f = self.body(fmap)
        else:
            h, w = fmap.shape[-2:]
            stride = self.pixels.stride[0]
            # The map has ceil(side / stride) positions or fewer: pad by stride - 1 at most, then cut to the map
            # (fixed pads and shape-based slices, so an ONNX export keeps dynamic sizes).
            padded = F.pad(image - 0.5, (0, stride - 1, 0, stride - 1), mode="replicate")
            patches = self.pixels(padded[..., : h * stride, : w * stride])
            f = self.body[1:](self.body[0](fmap) + patches.to(fmap.dtype))
        f = f.float()
        return torch.cat([f.mean(dim=(2, 3)), f.std(dim=(2, 3), unbiased=False)], dim=1)


def branch_from_state(state: dict[str, torch.Tensor]) -> QualityBranch:
    """An untrained branch of the shape a branch state_dict gives (its tap and width)."""
    width, cin = state["body.0.weight"].shape[:2]
    stride = state["pixels.weight"].shape[-1] if "pixels.weight" in state else 0
    return QualityBranch(cin, width, int(state["tap_stage"].item()), stride)


__all__ = ["QualityBranch", "branch_from_state"]

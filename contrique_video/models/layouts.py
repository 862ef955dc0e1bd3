"""Feature layouts: how an encoder's feature maps become one vector per frame and scale.

A layout module takes an N x 3 x H x W batch in [0, 1] (one scale) and returns N x ``dim`` float32, the
contract the backends already follow for CONTRIQUE (``Contrique.forward``), so every backend and the
ONNX export run any encoder family the same way; the backends add the half scale.
"""

from __future__ import annotations

import torch
from torch import nn

from contrique_video.models.efficientnet_lite import EfficientNetLite

#: Layout names and what they mean, for model cards.
LAYOUTS = {
    "last": "spatial mean of the last feature map",
    "stages-meanstd": "spatial mean and standard deviation of every stage's output and the last map",
}


class LayoutFeatures(nn.Module):
    """An EfficientNet-Lite trunk pooled by ``layout`` into one vector per image."""

    def __init__(self, trunk: EfficientNetLite, layout: str = "stages-meanstd"):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"unknown feature layout {layout!r}; known: {', '.join(LAYOUTS)}")
        self.trunk = trunk
        self.layout = layout
        maps = trunk.channels if layout == "stages-meanstd" else trunk.channels[-1:]
        self.feature_dim = 2 * sum(maps) if layout == "stages-meanstd" else maps[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "last":
            return self.trunk(x).mean(dim=(2, 3)).float()
        parts = []
        for fmap in self.trunk.stages(x):
            f = fmap.float()
            parts += [f.mean(dim=(2, 3)), f.std(dim=(2, 3), unbiased=False)]
        return torch.cat(parts, dim=1)


__all__ = ["LAYOUTS", "LayoutFeatures"]

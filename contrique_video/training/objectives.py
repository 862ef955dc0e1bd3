"""The contrastive objective: a multi-positive NT-Xent over L2-normalised, projected 2x2 patch vectors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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

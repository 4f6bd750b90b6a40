"""The cached mode's trainable image side: a small residual adapter on frozen dense CLIP features.

Cached features are already in CLIP's joint space (dense OpenCLIP after post-norm and projection),
so the adapter is `f + g(f)` with `g`'s last layer zero-initialised: training starts exactly at the
training-free MaskCLIP baseline and only learns a correction. A 3×3 convolution lets each token
look at its neighbours, which is what frozen per-token features lack most for dense prediction.
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureAdapter(nn.Module):
    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.body = nn.Sequential(nn.Conv2d(dim, hidden, 3, padding=1), nn.GroupNorm(1, hidden), nn.GELU(),
                                  nn.Conv2d(hidden, dim, 1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, h, w, C] -> [B, h, w, C]."""
        x = feats.permute(0, 3, 1, 2)
        return feats + self.body(x).permute(0, 2, 3, 1)

"""A small convolutional up-sampling decoder from per-cluster cosine maps to mask logits.

The student's cosine maps live on the coarse token grid (14² for ViT-B/16 at 224 px) while the
targets are masks at 256². The decoder is shared by all clusters (it sees one cluster's map at a
time, plus a few channels of image guidance), so it cannot know *which* cluster it decodes — it can
only sharpen the map it is given. Its output is `a · upsample(cos) + b + refine(...)` with the
refinement's last layer zero-initialised: training starts by fitting the cosine map itself, which
is what inference uses (the decoder is dropped there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ClusterMaskDecoder(nn.Module):
    def __init__(self, feat_dim: int, out_size: int = 256, guide_dim: int = 16, hidden: int = 32,
                 max_upsamples: int = 2):
        super().__init__()
        self.out_size = out_size
        self.max_upsamples = max_upsamples
        self.guide = nn.Conv2d(feat_dim, guide_dim, 1)
        self.stem = nn.Sequential(nn.Conv2d(1 + guide_dim, hidden, 3, padding=1), nn.GELU())
        ups, ch = [], hidden
        for _ in range(max_upsamples):
            nxt = max(8, ch // 2)
            ups.append(nn.Sequential(nn.Conv2d(ch, nxt, 3, padding=1), nn.GroupNorm(1, nxt), nn.GELU()))
            ch = nxt
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(ch, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def forward(self, cos: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """cos [B, K, h, w] (cosine per cluster), feats [B, h, w, C] (student grid) -> logits [B, K, S, S]."""
        b, k, h, w = cos.shape
        size = (self.out_size, self.out_size)
        guide = self.guide(feats.permute(0, 3, 1, 2))
        x = torch.cat([cos.reshape(b * k, 1, h, w),
                       guide.unsqueeze(1).expand(-1, k, -1, -1, -1).reshape(b * k, -1, h, w)], dim=1)
        x = self.stem(x)
        n_up = min(self.max_upsamples, max(0, math.ceil(math.log2(self.out_size / max(h, w)))))
        for i, block in enumerate(self.ups):
            if i < n_up:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(x)
        refine = F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)
        base = F.interpolate(cos.reshape(b * k, 1, h, w), size=size, mode="bilinear", align_corners=False)
        return (self.scale * base + self.bias + refine).reshape(b, k, *size)

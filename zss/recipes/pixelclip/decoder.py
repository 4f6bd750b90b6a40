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


def _double_conv(ch: int) -> nn.Sequential:
    """Two (3×3 conv without bias -> GroupNorm of 16-channel groups -> ReLU)."""
    return nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.GroupNorm(ch // 16, ch), nn.ReLU(),
                         nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.GroupNorm(ch // 16, ch), nn.ReLU())


class _DoubleConv(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.double_conv = _double_conv(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class OfficialMaskDecoder(nn.Module):
    """The authors' released decoder: it reads each cluster's cosine map only (no image guidance).

    3×3 conv 1→64, 2× transposed-conv up 64→64, double conv 64, 2× transposed-conv up 64→32,
    double conv 32, 3×3 conv 32→1, then bilinear to the mask size. Sub-module names follow the
    release's parameter names so `zss import pixelclip` maps its checkpoints one to one.
    """

    def __init__(self, out_size: int = 256, widths: tuple[int, int, int] = (64, 64, 32)):
        super().__init__()
        self.out_size = out_size
        self.conv0 = nn.Conv2d(1, widths[0], 3, padding=1)
        self.up1 = nn.ConvTranspose2d(widths[0], widths[1], 2, stride=2)
        self.conv1 = _DoubleConv(widths[1])
        self.up2 = nn.ConvTranspose2d(widths[1], widths[2], 2, stride=2)
        self.conv2 = _DoubleConv(widths[2])
        self.proj = nn.Conv2d(widths[2], 1, 3, padding=1)

    def forward(self, cos: torch.Tensor, feats: torch.Tensor | None = None) -> torch.Tensor:
        """cos [B, K, h, w] -> logits [B, K, S, S]; `feats` is accepted and ignored."""
        b, k, h, w = cos.shape
        x = self.conv0(cos.reshape(b * k, 1, h, w))
        x = self.conv2(self.up2(self.conv1(self.up1(x))))
        x = F.interpolate(self.proj(x), size=(self.out_size, self.out_size), mode="bilinear",
                          align_corners=False)
        return x.reshape(b, k, self.out_size, self.out_size)


DECODERS = ("zss", "official")


def build_decoder(variant: str, feat_dim: int, out_size: int = 256, guide_dim: int = 16,
                  hidden: int = 32) -> nn.Module:
    """`zss`: ClusterMaskDecoder (guided, residual on the cosine map); `official`: the release's."""
    if variant == "zss":
        return ClusterMaskDecoder(feat_dim, out_size=out_size, guide_dim=guide_dim, hidden=hidden)
    if variant == "official":
        return OfficialMaskDecoder(out_size=out_size)
    from zss.errors import ZssError

    raise ZssError(f"pixelclip decoder must be one of {', '.join(DECODERS)}, got {variant!r}")

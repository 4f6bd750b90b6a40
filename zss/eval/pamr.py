"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as optional post-processing.

Dense CLIP-style scores live on a coarse patch grid; PAMR propagates them along image edges: each
pixel's scores become an affinity-weighted average of its neighbours' (8 neighbours at each dilation),
where the affinity is a softmax over neighbours of -|I(p) - I(q)| / (0.1 * local std), averaged over
colour channels. Repeated `steps` times.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# offsets of the 8 neighbours in a 3x3 window (the centre is excluded)
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _shifted(x: torch.Tensor, dilations: tuple[int, ...], with_centre: bool = False) -> torch.Tensor:
    """[B,C,H,W] -> [B,C,P,H,W]: the value at each neighbour (replicate padding at the borders)."""
    _, _, h, w = x.shape
    out = []
    for d in dilations:
        xp = F.pad(x, [d, d, d, d], mode="replicate")
        offs = ([(0, 0)] if with_centre else []) + _NEIGHBOURS
        for dy, dx in offs:
            out.append(xp[:, :, d + dy * d:d + dy * d + h, d + dx * d:d + dx * d + w])
    return torch.stack(out, dim=2)


def pamr(image: torch.Tensor, scores: torch.Tensor, steps: int = 10,
         dilations: tuple[int, ...] = (8, 16)) -> torch.Tensor:
    """Refine scores [B,K,h,w] with the image [B,3,H,W]; returns [B,K,H,W] at the image size."""
    scores = F.interpolate(scores, size=image.shape[-2:], mode="bilinear", align_corners=True)
    image = image.to(scores.dtype)
    std = torch.cat([_shifted(image, (d,), with_centre=True) for d in dilations], 2).std(dim=2, keepdim=True)
    diff = (_shifted(image, dilations) - image.unsqueeze(2)).abs()
    aff = (-diff / (1e-8 + 0.1 * std)).mean(dim=1, keepdim=True)
    aff = F.softmax(aff, dim=2)
    for _ in range(steps):
        scores = (_shifted(scores, dilations) * aff).sum(dim=2)
    return scores

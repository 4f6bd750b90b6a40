"""Unlabeled masks -> per-cluster binary targets, plus the covered-pixel mask.

Masks of one image that the teacher assigns to the same cluster (prompt) are merged into one binary
map: PixelCLIP asks the student to predict "where is cluster k" for all k at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils


def decode_rle_masks(anns: list[dict[str, Any]]) -> np.ndarray:
    """COCO-RLE annotations (SA-1B schema) -> bool [M, h, w] at the RLE's own size."""
    if not anns:
        return np.zeros((0, 1, 1), bool)
    rles = []
    for a in anns:
        seg = a["segmentation"]
        counts = seg["counts"]
        rles.append({"size": seg["size"], "counts": counts.encode() if isinstance(counts, str) else counts})
    return np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1).astype(bool))


def merge_cluster_targets(masks: torch.Tensor, owner: torch.Tensor, assign: torch.Tensor,
                          batch_size: int, k: int) -> torch.Tensor:
    """Union of the masks assigned to each (image, cluster).

    masks [M, H, W] (bool or {0,1}), owner [M] image index in the batch, assign [M] cluster id
    -> targets [B, K, H, W] float in {0, 1}.
    """
    m, h, w = masks.shape
    onehot = torch.zeros(batch_size * k, m, device=masks.device, dtype=torch.float32)
    if m:
        onehot[owner.long() * k + assign.long(), torch.arange(m, device=masks.device)] = 1.0
    merged = onehot @ masks.reshape(m, h * w).float()
    return merged.clamp_max(1.0).reshape(batch_size, k, h, w)


def covered_pixels(masks: torch.Tensor, owner: torch.Tensor, batch_size: int) -> torch.Tensor:
    """[B, H, W] bool: pixels of each image covered by at least one of its masks."""
    m, h, w = masks.shape
    cover = torch.zeros(batch_size, h * w, device=masks.device, dtype=torch.float32)
    cover.index_add_(0, owner.long(), masks.reshape(m, h * w).float())
    return (cover > 0).reshape(batch_size, h, w)


def _bilinear_matrix(out: int, n: int, device, dtype=torch.float32) -> torch.Tensor:
    """[out, n]: row i = the weights bilinear upsampling (align_corners=False) gives grid cell j at
    output pixel i; each row sums to 1."""
    eye = torch.eye(n, device=device, dtype=dtype)[None, None]          # [1, 1, n, n]
    return torch.nn.functional.interpolate(eye, size=(out, n), mode="bilinear", align_corners=False)[0, 0]


def pool_mask_features(feats: torch.Tensor, masks: torch.Tensor, owner: torch.Tensor,
                       pooling: str = "area") -> torch.Tensor:
    """Average of a dense feature grid over each mask.

    feats [B, h, w, C] (grid), masks [M, H, W] at any resolution -> [M, C].
    `area` (zss): masks are area-averaged down to the grid, so a mask covering part of a cell
    contributes that cell proportionally. `bilinear` (the PixelCLIP release): the mean over the mask's
    pixels of the features bilinearly upsampled to the mask resolution, computed exactly without the
    upsampled tensor: bilinear upsampling is separable, up(F) = Uh F Uw^T, so the mask's weight on
    cell (i, j) is (Uh^T M Uw)[i, j].
    """
    b, h, w, c = feats.shape
    if pooling == "area":
        weights = torch.nn.functional.adaptive_avg_pool2d(masks[:, None].float(), (h, w))[:, 0]  # [M,h,w]
    elif pooling == "bilinear":
        H, W = masks.shape[-2:]
        uh, uw = _bilinear_matrix(H, h, masks.device), _bilinear_matrix(W, w, masks.device)
        weights = uh.t() @ masks.float() @ uw                                       # [M, h, w]
    else:
        raise ValueError(f"unknown mask pooling {pooling!r}")
    weights = weights.reshape(len(masks), h * w)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
    grid = feats.reshape(b, h * w, c)[owner.long()]  # [M, h*w, C]
    return torch.einsum("mp,mpc->mc", weights.to(grid.dtype), grid)

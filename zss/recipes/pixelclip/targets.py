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


def pool_mask_features(feats: torch.Tensor, masks: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Average of a dense feature grid over each mask.

    feats [B, h, w, C] (grid), masks [M, H, W] at any resolution -> [M, C]. Masks are area-averaged
    down to the grid, so a mask covering part of a cell contributes that cell proportionally.
    """
    b, h, w, c = feats.shape
    weights = torch.nn.functional.adaptive_avg_pool2d(masks[:, None].float(), (h, w))[:, 0]  # [M,h,w]
    weights = weights.reshape(len(masks), h * w)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
    grid = feats.reshape(b, h * w, c)[owner.long()]  # [M, h*w, C]
    return torch.einsum("mp,mpc->mc", weights.to(grid.dtype), grid)

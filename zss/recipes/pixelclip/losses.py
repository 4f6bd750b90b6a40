"""PixelCLIP's mask loss: binary cross-entropy of every cluster's map, on covered pixels only.

Unlabeled masks rarely tile the whole image (SAM leaves gaps); a pixel no mask covers carries no
information about any cluster, so it must not be pushed towards "background" for all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, covered: torch.Tensor) -> torch.Tensor:
    """Mean BCE over pixels covered by at least one mask, all K clusters.

    logits, targets: [B, K, H, W]; covered: [B, H, W] bool. Returns a scalar (0 when nothing is covered).
    """
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    weight = covered[:, None].to(per_pixel.dtype)
    denom = weight.sum() * logits.shape[1]
    return (per_pixel * weight).sum() / denom.clamp_min(1.0)

"""Online DINO masks for full-mode PixelCLIP (`masks: dino-online`), as the release's DINO variant.

Each training step, a frozen DINO ViT-S/16 (a timm name + local checkpoint, loaded through
`zss.models.backbone.load_backbone` like the ingest's `dino` mask mode) encodes every weak crop at
`img_size`² (the release: the 640 crop, a 40×40 grid); the last layer's normalised patch tokens of
each image are clustered by Euclidean k-means (k = 16 in the release; zss: seeded k-means++ with
float64 decisions, all images of the batch in one torch call on their device, `zss.utils.kmeans`
`kmeans_label_grids`: the partitions of the per-image numpy k-means), and each cluster becomes one binary mask at `mask_size` (the label grid upsampled
nearest). These masks replace the shard's masks for that step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zss.errors import ZssError
from zss.utils.kmeans import kmeans_label_grid, kmeans_label_grids, label_masks, upsample_labels

DINO_DEFAULT = "vit_small_patch16_224.dino"


def masks_from_features(patch: np.ndarray, k: int, seed: int, iters: int, size: int) -> np.ndarray:
    """Patch features [Hp, Wp, D] -> bool [n ≤ k, size, size]: one mask per non-empty Euclidean
    k-means cluster (ids by first appearance in raster order); the masks partition the square."""
    grid = kmeans_label_grid(np.asarray(patch, dtype=np.float64), k, seed, iters, spherical=False)
    return label_masks(upsample_labels(grid, (size, size)))


class DinoMaskMaker:
    """A frozen DINO backbone and the k-means settings; `masks(images, seeds)` per batch."""

    def __init__(self, model: str, checkpoint: str | None, img_size: int, k: int, iters: int,
                 mask_size: int) -> None:
        if not checkpoint:
            raise ZssError(f"pixelclip masks: dino-online needs recipe.dino_checkpoint=PATH "
                           f"(local weights of {model})")
        if not Path(checkpoint).expanduser().is_file():
            raise ZssError(f"pixelclip dino_checkpoint not found: {checkpoint}")
        self.model_name, self.checkpoint = model, checkpoint
        self.img_size, self.k, self.iters, self.mask_size = img_size, k, iters, mask_size
        self._backbone = None

    @property
    def backbone(self):
        """Loaded on first use (in the training process, never in data-loader workers)."""
        if self._backbone is None:
            from zss.models.backbone import load_backbone

            self._backbone = load_backbone(self.model_name, self.checkpoint, self.img_size)
        return self._backbone

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, S, S] (uint8 0–255 or float 0–1) -> patch tokens [B, Hp, Wp, D] (float32)."""
        net = self.backbone
        if next(net.parameters()).device != images.device:
            net.to(images.device)
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        with torch.autocast(x.device.type, enabled=False):
            patch, _ = net(x)
        return patch.float()

    def masks(self, images: torch.Tensor, seeds: list[int]) -> list[torch.Tensor]:
        """One bool tensor [n_i, mask_size, mask_size] per image (on the images' device): per image
        what `masks_from_features` returns, the k-means of the whole batch in one call on the
        features' device."""
        feats = self.features(images)
        grids = kmeans_label_grids(feats, self.k, [int(s) for s in seeds], self.iters, spherical=False)
        return [torch.from_numpy(label_masks(upsample_labels(g, (self.mask_size, self.mask_size))))
                .to(images.device) for g in grids.cpu().numpy()]

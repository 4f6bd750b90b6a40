"""The PixelCLIP network: student, EMA teacher, learnable prompts and mask decoder in one module.

Everything trainable runs inside `forward`, so DDP's gradient hooks see it. One forward step:

1. teacher (no grad) on the weak view -> dense features -> each mask's mean feature;
2. cosine to the k prompt embeddings × `cluster_scale` -> Sinkhorn-Knopp -> hard cluster per mask;
3. masks of a cluster merge into its target map; covered pixels = union of all masks;
4. student on the strong view -> per-cluster cosine maps -> decoder -> logits at mask resolution;
5. BCE over covered pixels, all k clusters.

Steps 2–5 are shared; what the student and teacher are (the CLIP image tower on images, or a
residual adapter on cached features) is the job of a mode object (`zss.recipes.pixelclip.modes`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zss.models.clip_dense import DenseCLIP
from zss.recipes.pixelclip.decoder import build_decoder
from zss.recipes.pixelclip.ema import ema_update
from zss.recipes.pixelclip.losses import masked_bce
from zss.recipes.pixelclip.modes import MODES, encoder_trainable, get_mode
from zss.recipes.pixelclip.prompts import LearnablePrompts
from zss.recipes.pixelclip.sinkhorn import sinkhorn_assign
from zss.recipes.pixelclip.targets import covered_pixels, merge_cluster_targets, pool_mask_features

__all__ = ["MODES", "PixelCLIPNet", "encoder_trainable"]


class PixelCLIPNet(nn.Module):
    def __init__(self, clip: DenseCLIP, mode: str, k: int = 64, template: str | None = None,
                 prompt_seed: int = 0, mask_size: int = 256, cluster_scale: float = 20.0,
                 sinkhorn_iters: int = 3, momentum: float = 0.999, adapter_hidden: int = 256,
                 decoder_hidden: int = 32, decoder_guide: int = 16, decoder: str = "zss",
                 sinkhorn_start: str = "exp", mask_pooling: str = "area"):
        super().__init__()
        self.impl = get_mode(mode)
        self.mode = self.impl.name
        self.clip = clip
        self.cluster_scale = cluster_scale
        self.sinkhorn_iters = sinkhorn_iters
        self.sinkhorn_start = sinkhorn_start
        self.mask_pooling = mask_pooling
        self.momentum = momentum
        for p in clip.parameters():
            p.requires_grad_(False)
        kwargs = {"template": template} if template else {}
        self.prompts = LearnablePrompts(clip, k=k, seed=prompt_seed, **kwargs)
        self.decoder_variant = decoder
        self.decoder = build_decoder(decoder, clip.embed_dim, out_size=mask_size, guide_dim=decoder_guide,
                                     hidden=decoder_hidden)
        self.impl.build(self, clip, adapter_hidden)

    # ------------------------------------------------------------------ pieces
    def student_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.impl.student_features(self, batch)

    @torch.no_grad()
    def teacher_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.impl.teacher_features(self, batch)

    @torch.no_grad()
    def assign(self, teacher_feats: torch.Tensor, text: torch.Tensor, masks: torch.Tensor,
               owner: torch.Tensor) -> torch.Tensor:
        """Hard cluster id per mask: Sinkhorn over cos(mask mean teacher feature, prompt) × scale."""
        mask_feats = F.normalize(pool_mask_features(teacher_feats.float(), masks, owner, self.mask_pooling), dim=-1)
        return sinkhorn_assign(mask_feats @ text.detach().float().t() * self.cluster_scale,
                               self.sinkhorn_iters, start=self.sinkhorn_start)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        masks, owner = batch["masks"], batch["owner"]
        bsz = int(batch["n_images"])
        text = self.prompts(self.clip)  # [K, C], grad to the prompt context only
        k = text.shape[0]
        t_feats = self.teacher_features(batch)
        assign = self.assign(t_feats, text, masks, owner)
        targets = merge_cluster_targets(masks, owner, assign, bsz, k)
        covered = covered_pixels(masks, owner, bsz)
        s_feats = self.student_features(batch)
        cos = torch.einsum("bhwc,kc->bkhw", F.normalize(s_feats, dim=-1), text)
        logits = self.decoder(cos, s_feats)
        loss = masked_bce(logits, targets, covered)
        logs = {"n_masks": float(len(masks)), "clusters_used": float(torch.unique(assign).numel())}
        return loss, logs

    # ------------------------------------------------------------------ training hooks
    def student_module(self) -> nn.Module:
        return self.impl.student(self)

    @torch.no_grad()
    def update_teacher(self) -> None:
        ema_update(self.teacher, self.student_module(), self.momentum)

    def train(self, mode: bool = True) -> "PixelCLIPNet":
        super().train(mode)
        self.teacher.eval()
        if self.impl.freeze_clip_in_train():
            self.clip.eval()
        return self

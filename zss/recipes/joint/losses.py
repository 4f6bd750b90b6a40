"""The joint recipe's mask-level terms, pure functions on tensors (the DDP hook is the SimZSS
`Gather` protocol: identity in one process).

Shapes: B images, P patches per image, D feature width, M masks (regions) in the batch, each
owned by one image (`owner` [M]), N caption-concept occurrences, K distinct concepts in the
(gathered) batch. `regions` are the area-weighted mean patch features of each mask
(`zss.recipes.pixelclip.targets.pool_mask_features`); the text side (`bank`, `queries`) carries
every gradient: the frozen features never learn.

Each term returns (value, count): the count is how many items (occurrences or masks) it averaged
over in the whole gathered batch, so a batch without data for a term gives (0 attached to the
graph, 0) and the recipe logs it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zss.recipes.pixelclip.sinkhorn import sinkhorn
from zss.recipes.simzss.losses import SINGLE_PROCESS, Gather


def region_slots(owner: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, int]:
    """Each region's place among its image's regions (in their given order) [M], and the most
    regions of one image (at least 1): where `pad_regions` puts region m, (owner[m], slot[m])."""
    if owner.numel() == 0:
        return owner.clone(), 1
    order = torch.argsort(owner, stable=True)
    counts = torch.bincount(owner, minlength=batch_size)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(owner)
    slot[order] = torch.arange(len(owner), device=owner.device) - starts[owner[order]]
    return slot, int(counts.max())


def pool_regions(grid: torch.Tensor, weights: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Each region's weighted mean patch feature [M,D]: grid [B,P,D], weights [M,P] (a mask's area
    fraction per patch, on the grid) of images `owner` [M]. One batched product over images padded
    to the same region count; equal to PixelCLIP's `pool_mask_features` ("area") on masks already at
    the grid size, image by image (tested)."""
    if weights.shape[0] == 0:
        return grid.new_zeros(0, grid.shape[-1])
    w = (weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)).to(grid.dtype)
    slot, most = region_slots(owner, grid.shape[0])
    padded = w.new_zeros(grid.shape[0], most, w.shape[1]).index_put((owner, slot), w)   # pad_regions' layout
    return torch.bmm(padded, grid)[owner, slot]                                        # [B,R,D] -> [M,D]


def pad_regions(regions: torch.Tensor, owner: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Flat regions [M,D] of images `owner` [M] -> [B,R,D], each image's regions first, zero rows
    after them (R = most regions of one image, at least 1). Zero rows are exact padding for
    `zss.recipes.simzss.losses.attention_pool`: a zero vector adds weight but no direction, and
    the pooled result is renormalised."""
    d = regions.shape[-1]
    if regions.shape[0] == 0:
        return regions.new_zeros(batch_size, 1, d)
    slot, most = region_slots(owner, batch_size)
    return regions.new_zeros(batch_size, most, d).index_put((owner, slot), regions)


def region_word_mil(queries: torch.Tensor, occ_image: torch.Tensor, regions: torch.Tensor,
                    region_image: torch.Tensor, n_images: int, temperature: float = 0.07,
                    gather: Gather = SINGLE_PROCESS) -> tuple[torch.Tensor, int]:
    """Region–word multiple-instance loss: a caption concept must match the best region of its own
    image better than the best region of every other image of the batch.

    queries [N,D] (this process's occurrences, normalised concept embeddings), occ_image [N] their
    image's index in the gathered batch; regions [M,D] / region_image [M] likewise (this process's);
    `n_images` is this process's image count. score[n, b] = max over image b's regions of cos(query,
    region); cross-entropy over the images that have regions, target = the occurrence's own image.
    Occurrences whose own image has no region are left out. Returns (world · local summed CE / all
    counted occurrences, that count) — averaged over processes, the mean over the gathered batch.
    """
    r_all = F.normalize(gather.rows(regions.float()), dim=-1)
    img_all = gather.rows(region_image)
    total_images = int(gather.rows(torch.tensor([n_images], device=queries.device)).sum())
    has = torch.zeros(total_images, dtype=torch.bool, device=queries.device)
    has[img_all] = True
    keep = has[occ_image]
    n_kept = int(gather.rows(keep.sum().reshape(1)).sum())
    if n_kept == 0 or int(has.sum()) < 2:
        return queries.sum() * 0.0, 0
    sim = queries[keep].float() @ r_all.t()                                   # [n, M_all]
    best = sim.new_full((sim.shape[0], total_images), float("-inf"))
    best = best.scatter_reduce(1, img_all.expand_as(sim), sim, reduce="amax", include_self=True)
    logits = best[:, has] / temperature
    target = torch.cumsum(has.long(), 0)[occ_image[keep]] - 1                 # own image among `has`
    ce = F.cross_entropy(logits, target, reduction="sum")
    return ce * gather.world_size / n_kept, n_kept


def mask_consistency(patches: torch.Tensor, bank: torch.Tensor, weights: torch.Tensor, owner: torch.Tensor,
                     scale: float = 10.0, gather: Gather = SINGLE_PROCESS) -> tuple[torch.Tensor, int]:
    """Patches of one mask should agree in their class distribution.

    patches [B,P,D]; bank [K,D] normalised concept embeddings; weights [M,P] each mask's area
    fraction per patch; owner [M]. p_i = softmax_K(scale · cos(patch_i, bank)); the mask's
    distribution q_m = Σ_i w_mi p_i / Σ_i w_mi (detached, the target); the loss is the weighted
    mean over the mask's patches of KL(q_m ‖ p_i), averaged over masks (0 when every patch agrees).
    Returns (world · local sum / all masks, all masks) as `region_word_mil` does.
    """
    m = weights.shape[0]
    n_all = int(gather.rows(torch.tensor([m], device=patches.device)).sum())
    if n_all == 0 or bank.shape[0] < 2:
        return bank.sum() * 0.0, 0
    if m == 0:
        return bank.sum() * 0.0, n_all
    logp = torch.log_softmax(scale * F.normalize(patches.float(), dim=-1) @ bank.t(), dim=-1)  # [B,P,K]
    w = weights.float() / weights.float().sum(dim=1, keepdim=True).clamp_min(1e-6)
    w = pad_regions(w, owner, patches.shape[0])                                # [B,R,P], zero rows pad
    q = torch.bmm(w, logp.exp()).detach()                                     # [B,R,K] mask distributions
    # Σ_i w_ri KL(q_r ‖ p_i) = Σ_k q_rk log q_rk · Σ_i w_ri − Σ_i w_ri Σ_k q_rk log p_ik
    neg_entropy = (q * q.clamp_min(1e-12).log()).sum(-1) * w.sum(-1)           # [B,R]
    cross = (w * torch.bmm(q, logp.transpose(1, 2))).sum(-1)                  # [B,R]
    return (neg_entropy - cross).sum() * gather.world_size / n_all, n_all


def region_clustering(regions: torch.Tensor, bank: torch.Tensor, scale: float = 10.0, iters: int = 3,
                      gather: Gather = SINGLE_PROCESS) -> tuple[torch.Tensor, int]:
    """Online clustering of the batch's regions onto its caption concepts, Sinkhorn-balanced (the
    PixelCLIP idea with the batch's concept embeddings as the prompts): Q = sinkhorn(scale ·
    cos(region, bank)) (equipartitioned over the gathered batch, no gradient), loss = cross-entropy
    of softmax(scale · cos) against Q, so unlabeled masks pull the concept embeddings apart.
    regions [M,D] -> (world · local sum / all regions, all regions)."""
    m = regions.shape[0]
    n_all = int(gather.rows(torch.tensor([m], device=bank.device)).sum())
    if n_all == 0 or bank.shape[0] < 2:
        return bank.sum() * 0.0, 0
    logits = scale * F.normalize(regions.float(), dim=-1) @ bank.t()          # [M,K]
    q = sinkhorn(logits.detach(), iters)                                      # every process calls it
    if m == 0:
        return bank.sum() * 0.0, n_all
    ce = -(q * torch.log_softmax(logits, dim=-1)).sum()
    return ce * gather.world_size / n_all, n_all

"""SimZSS losses as pure functions on tensors (no module state, no process group).

Shapes: B images, P patches per image (the flattened Hp×Wp grid), D feature width (the frozen
backbone's), L text positions, N concept occurrences in the batch, K distinct concept ids.
Under DDP the recipe gathers the inputs (zss.trainer.distributed) and calls the same functions.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


def global_infonce(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE between matching rows of `image` [B,D] and `text` [B,D].

    Both are L2-normalised here; logits = logit_scale · cos; the loss is the mean of the
    image→text and text→image cross-entropies with the diagonal as targets.
    """
    img = F.normalize(image.float(), dim=-1)
    txt = F.normalize(text.float(), dim=-1)
    logits = logit_scale * img @ txt.t()
    target = torch.arange(img.shape[0], device=img.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def occurrence_embeddings(tokens: torch.Tensor, occ_batch: torch.Tensor, occ_start: torch.Tensor,
                          occ_end: torch.Tensor) -> torch.Tensor:
    """Each occurrence's token embeddings, L2-normalised per token, summed over [start, end).

    tokens [B,L,D]; occ_batch, occ_start, occ_end [N] (long) -> [N,D] (not normalised).
    A prefix sum over positions keeps memory at B·L·D whatever N is.
    """
    t = F.normalize(tokens.float(), dim=-1)
    csum = torch.cat([t.new_zeros(t.shape[0], 1, t.shape[2]), t.cumsum(dim=1)], dim=1)
    return csum[occ_batch, occ_end] - csum[occ_batch, occ_start]


def concept_bank(occ: torch.Tensor, occ_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's concept bank: one vector per distinct concept id, the normalised mean of its
    occurrences.

    occ [N,D], occ_ids [N] -> (bank [K,D] L2-normalised, ids [K] sorted, index [N] into bank).
    Concept ids absent from the batch have no row, which is the same as masking them out.
    """
    ids, index = torch.unique(occ_ids, return_inverse=True)
    sums = occ.new_zeros(ids.shape[0], occ.shape[1]).index_add(0, index, occ)
    counts = torch.bincount(index, minlength=ids.shape[0]).clamp(min=1).to(occ.dtype)
    return F.normalize(sums / counts[:, None], dim=-1), ids, index


def attention_pool(queries: torch.Tensor, patches: torch.Tensor, occ_batch: torch.Tensor,
                   temperature: float = 0.1) -> torch.Tensor:
    """Each query attends over the normalised patches of its own image; returns the normalised
    attention-pooled visual concept.

    queries [N,D] (normalised), patches [B,P,D], occ_batch [N] -> [N,D] L2-normalised.
    weights = softmax_P(q · p̂ / temperature); pooled = Σ_P weights · p̂.
    Occurrences are packed per image ([B, M, ·], M = most occurrences in one image) so memory is
    B·M·P, not N·P·D.
    """
    pn = F.normalize(patches.float(), dim=-1)
    n = queries.shape[0]
    if n == 0:
        return queries.new_zeros(0, patches.shape[-1])
    order = torch.argsort(occ_batch, stable=True)
    b_sorted = occ_batch[order]
    counts = torch.bincount(b_sorted, minlength=patches.shape[0])
    starts = torch.cumsum(counts, 0) - counts
    slot_sorted = torch.arange(n, device=queries.device) - starts[b_sorted]
    slot = torch.empty_like(slot_sorted)
    slot[order] = slot_sorted
    m = int(counts.max())
    q = queries.new_zeros(patches.shape[0], m, queries.shape[1])
    q = q.index_put((occ_batch, slot), queries.float())
    att = torch.softmax(q @ pn.transpose(1, 2) / temperature, dim=-1)  # [B,M,P]
    pooled = att @ pn                                                  # [B,M,D]
    return F.normalize(pooled[occ_batch, slot], dim=-1)


def local_logits(visual: torch.Tensor, bank: torch.Tensor, scale: float = 1 / 0.07) -> torch.Tensor:
    """Pooled visual concepts [N,D] against the batch bank [K,D] -> logits [N,K] (both normalised)."""
    return scale * visual @ bank.t()


def local_targets(logits: torch.Tensor, own_index: torch.Tensor, target: str = "own") -> torch.Tensor:
    """Cross-entropy targets: the occurrence's own concept (`own`), or the detached argmax of the
    logits (`argmax`, what the authors' released code does)."""
    if target == "own":
        return own_index
    if target == "argmax":
        return logits.detach().argmax(dim=-1)
    raise ValueError(f"local target must be 'own' or 'argmax', got {target!r}")


class Gather(Protocol):
    """How the local loss sees the other processes' occurrences (a DDP hook).

    `rows(x)` concatenates `x` [n_r, ...] over processes along dim 0 (rank 0 first) with
    gradients flowing back to each owner; `offset(n, device)` is this process's first row in
    that concatenation; `world_size` the number of processes. `SINGLE_PROCESS` is the identity.
    """

    world_size: int

    def rows(self, x: torch.Tensor) -> torch.Tensor: ...

    def offset(self, n_local: int, device: torch.device) -> int: ...


class _SingleProcess:
    world_size = 1

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def offset(self, n_local: int, device: torch.device) -> int:
        return 0


SINGLE_PROCESS: Gather = _SingleProcess()


def local_concept_loss(tokens: torch.Tensor, patches: torch.Tensor, occ_batch: torch.Tensor,
                       occ_start: torch.Tensor, occ_end: torch.Tensor, occ_ids: torch.Tensor,
                       temperature: float = 0.1, scale: float = 1 / 0.07,
                       target: str = "own", gather: Gather = SINGLE_PROCESS) -> torch.Tensor:
    """SimZSS's concept-local loss; mean cross-entropy over the N occurrences, 0 (still attached
    to `tokens`) when the batch has none.

    tokens [B,L,D], patches [B,P,D], occ_* [N] -> scalar. With a DDP `gather`, the concept bank
    is built from every process's occurrences (each occurrence still attends over its own image)
    and the value is world · (this process's summed cross-entropies) / (occurrences in all
    processes), whose average over processes is the mean over the whole gathered batch.
    """
    occ = occurrence_embeddings(tokens, occ_batch, occ_start, occ_end)
    occ_all = gather.rows(occ)
    ids_all = gather.rows(occ_ids)
    if ids_all.numel() == 0:
        return tokens.sum() * 0.0
    bank, _, index_all = concept_bank(occ_all, ids_all)
    n = occ.shape[0]
    start = gather.offset(n, occ.device)  # collective: every process calls it
    if n == 0:
        return bank.sum() * 0.0
    index = index_all[start: start + n]
    visual = attention_pool(bank[index], patches, occ_batch, temperature)
    logits = local_logits(visual, bank, scale)
    ce = F.cross_entropy(logits, local_targets(logits, index, target), reduction="sum")
    return ce * gather.world_size / ids_all.numel()


def total_loss(global_loss: torch.Tensor, local_loss: torch.Tensor, weight: float = 0.05) -> torch.Tensor:
    """global + λ · local (λ = 0.05 in the paper)."""
    return global_loss + weight * local_loss

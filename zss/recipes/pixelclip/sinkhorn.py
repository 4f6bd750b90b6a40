"""Sinkhorn-Knopp equipartition: turn mask-vs-prompt scores into balanced cluster assignments.

Without a balance constraint, online clustering collapses (every mask picks the prompt that is
currently closest to everything). Sinkhorn-Knopp (as in SwAV) finds the soft assignment closest
to exp(scores) whose clusters share the masks equally. Under DDP the normalising sums are
all-reduced, so the equipartition holds over the global batch, not per process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from zss.trainer.distributed import is_distributed


def _all_reduce(t: torch.Tensor, op: "dist.ReduceOp.RedOpType" = dist.ReduceOp.SUM) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t, op=op)
    return t


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, n_iters: int = 3, start: str = "exp") -> torch.Tensor:
    """Scores [N, K] (already multiplied by the scale) -> soft assignment Q [N, K].

    `start="exp"` begins from exp(scores) (SwAV); `start="softmax"` from each row's softmax over
    the clusters (the PixelCLIP release), which weighs every mask equally before balancing.

    Each row of Q sums to 1; after the iterations each column sums to ≈ N_total / K, where
    N_total counts the rows of every process. Rows may be zero on a process.
    """
    scores = scores.float()
    n, k = scores.shape
    top = scores.max() if n else scores.new_tensor(float("-inf"))
    top = _all_reduce(top.clone(), dist.ReduceOp.MAX)
    if start == "softmax":
        q = torch.softmax(scores, dim=1).t()  # [K, N], each mask's row sums to 1
    elif start == "exp":
        q = torch.exp(scores - top).t()  # [K, N]
    else:
        raise ValueError(f"sinkhorn start must be 'exp' or 'softmax', got {start!r}")
    n_total = _all_reduce(torch.tensor(float(n), device=scores.device))
    q /= _all_reduce(q.sum()).clamp_min(1e-30)
    for _ in range(n_iters):
        q /= _all_reduce(q.sum(dim=1, keepdim=True)).clamp_min(1e-30)  # each cluster 1/K of the mass
        q /= k
        q /= q.sum(dim=0, keepdim=True).clamp_min(1e-30)  # each sample 1/N of the mass
        q /= n_total
    return (q * n_total).t()


@torch.no_grad()
def sinkhorn_assign(scores: torch.Tensor, n_iters: int = 3, start: str = "exp") -> torch.Tensor:
    """Hard cluster ids [N] (argmax of the equipartitioned soft assignment)."""
    return sinkhorn(scores, n_iters, start).argmax(dim=1)

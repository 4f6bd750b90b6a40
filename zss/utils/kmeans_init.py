"""The k-means++ init of `zss.utils.kmeans_torch`: per image the centres `zss.utils.kmeans.kmeans` draws.

numpy's kmeans draws, per image from `numpy.random.default_rng(seed)`, `integers(n)` for the first
centre, then `choice(n, p=d2 / d2.sum())` for each further one (d2: float64 squared distance to the
nearest centre so far; no more centres once d2 sums to 0). Both functions here make the same draws
from the same Generators: on a CPU image by image with numpy's own `choice` (one torch
matrix-vector product per centre; the rest are cheap numpy calls on N values), on other devices
for a whole batch at once (batched products, `choice`'s cumulative-distribution read done in
torch). d2 is computed as xx - 2 x.c + cc: where that leaves only float64 rounding residue (fewer
distinct points than centres), it is recomputed from the differences, which give numpy's exact
zeros.
"""

from __future__ import annotations

import numpy as np
import torch

_SLACK = 1e-12  # d2 totals below _SLACK * N * max |x|^2 may be rounding residue: recompute exactly
_F64 = torch.float64


def _exact_d2(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """min over centres [j, D] of the squared distances of rows x [N, D], from the differences."""
    return torch.cdist(x, centres, compute_mode="donot_use_mm_for_euclid_dist").amin(1) ** 2


def kmeanspp(x: torch.Tensor, xx: torch.Tensor, k: int,
             rngs: list[np.random.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ centres [C, k, D] (zeros where absent) and which of them are real [C, k] for
    prepared float64 rows x [C, N, D] with squared norms xx [C, N], one Generator per image."""
    if x.device.type == "cpu":
        return kmeanspp_cpu(x, xx, k, rngs)
    return kmeanspp_batched(x, xx, k, rngs)


def kmeanspp_cpu(x: torch.Tensor, xx: torch.Tensor, k: int,
                 rngs: list[np.random.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """`kmeanspp` image by image on a CPU, with numpy's own `Generator.choice`."""
    c_, n, _ = x.shape
    picks = torch.zeros(c_, k, dtype=torch.int64)
    valid = torch.zeros(c_, k, dtype=torch.bool)
    dist = torch.empty(n, dtype=_F64)
    dn = dist.numpy()
    for i, g in enumerate(rngs):
        xi, xxi = x[i], xx[i]
        xxn = xxi.numpy()
        tiny = float(xxn.max()) * _SLACK * n
        p = [int(g.integers(n))]
        d2 = np.full(n, np.inf)
        for _ in range(1, k):
            torch.addmv(xxi, xi, xi[p[-1]], alpha=-2, out=dist)  # numpy: ((x - c) ** 2).sum(1)
            dn += xxn[p[-1]]
            np.minimum(d2, np.maximum(dn, 0.0, out=dn), out=d2)
            total = d2.sum()
            if total <= tiny:  # maybe only duplicates of centres left: numpy's exact zeros
                d2 = _exact_d2(xi, xi[p]).numpy()
                total = d2.sum()
            if total <= 0:  # numpy: `if total <= 0: break`
                break
            p.append(int(g.choice(n, p=d2 / total)))
        picks[i, : len(p)] = torch.as_tensor(p)
        valid[i, : len(p)] = True
    centres = x[torch.arange(c_)[:, None], picks] * valid[..., None]
    return centres, valid


def kmeanspp_batched(x: torch.Tensor, xx: torch.Tensor, k: int,
                     rngs: list[np.random.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """`kmeanspp` for the whole batch at once (GPU): `choice`'s read of one `random()` against the
    normalised cumulative distribution, done in torch."""
    c_, n, d = x.shape
    dev = x.device
    ar = torch.arange(c_, device=dev)
    centres = x.new_zeros(c_, k, d)
    valid = torch.zeros(c_, k, dtype=torch.bool, device=dev)
    pick = torch.as_tensor([int(g.integers(n)) for g in rngs], device=dev)
    centres[:, 0] = x[ar, pick]
    valid[:, 0] = True
    tiny = (xx.amax(1) * (_SLACK * n)).tolist()
    active = [True] * c_
    d2 = torch.full((c_, n), float("inf"), dtype=_F64, device=dev)
    dist = torch.empty_like(d2)
    for j in range(1, k):
        c = centres[:, j - 1]
        torch.baddbmm(xx[..., None], x, c[..., None], alpha=-2, out=dist[..., None])
        torch.minimum(d2, dist.add_((c * c).sum(-1, keepdim=True)).clamp_min_(0.0), out=d2)
        totals = d2.sum(1).tolist()
        for i, t in enumerate(totals):
            if active[i] and t <= tiny[i]:  # maybe only duplicates of centres left: numpy's exact zeros
                d2[i] = _exact_d2(x[i], centres[i, :j])
                totals[i] = float(d2[i].sum())
        active = [a and t > 0 for a, t in zip(active, totals)]  # numpy: `if total <= 0: break`
        if not any(active):
            break
        total = torch.as_tensor(totals, dtype=_F64, device=dev)
        cdf = torch.cumsum(d2 / total[:, None], 1)
        cdf /= cdf[:, -1:].clone()
        u = torch.as_tensor([g.random() if a else 0.0 for g, a in zip(rngs, active)], dtype=_F64, device=dev)
        pick = torch.searchsorted(cdf, u[:, None], right=True)[:, 0].clamp_(0, n - 1)
        act = torch.as_tensor(active, device=dev)
        centres[:, j] = torch.where(act[:, None], x[ar, pick], centres[:, j])
        valid[:, j] = act
    return centres, valid

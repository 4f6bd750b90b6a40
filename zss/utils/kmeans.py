"""k-means over one image's patch grid, and its label map as one mask per cluster.

The per-image functions here are pure float64 numpy (the same seed gives the same labels on every
run): the reference, and what single-image callers (eval) use. The ingest's k-means mask modes
(`zss.ingest.stages.masks`) and PixelCLIP's online DINO masks (`zss.recipes.pixelclip.dino_masks`)
cluster a whole batch at once with `kmeans_label_grids` (torch, on the tensors' device, CUDA when
present; `zss.utils.kmeans_torch`), which returns per image what `kmeans_label_grid` returns (the
tests compare the two on fixed inputs).
"""

from __future__ import annotations

import numpy as np


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 50, spherical: bool = True) -> np.ndarray:
    """k-means labels of the rows of `x` [N, D]: seeded k-means++ init, Lloyd steps until the
    labels stop changing or `iters` steps. Spherical (unit rows, cosine assignment, renormalised
    centres) or, `spherical=False`, Euclidean."""
    x = np.asarray(x, dtype=np.float64)
    if spherical:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(n)]]
    d2 = np.full(n, np.inf)
    for _ in range(1, k):
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
        total = d2.sum()
        if total <= 0:  # fewer distinct points than k: stop adding duplicates
            break
        centres.append(x[rng.choice(n, p=d2 / total)])
    c = np.stack(centres)
    labels = np.full(n, -1)
    for _ in range(iters):
        if spherical:
            new = np.argmax(x @ c.T, axis=1)
        else:
            new = np.argmin((x ** 2).sum(1, keepdims=True) - 2 * x @ c.T + (c ** 2).sum(1)[None], axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(len(c)):
            members = x[labels == j]
            if len(members):
                m = members.sum(0)
                c[j] = m / max(np.linalg.norm(m), 1e-12) if spherical else members.mean(0)
    return labels


def first_appearance(labels: np.ndarray) -> np.ndarray:
    """Cluster ids renumbered 0..n-1 by first appearance in raster order (so the numbering does
    not depend on the init's order)."""
    labels = np.asarray(labels)
    _, first = np.unique(labels, return_index=True)
    order = labels[np.sort(first)]
    remap = np.zeros(labels.max() + 1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return remap[labels]


def upsample_labels(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a [Hp, Wp] label grid to [h, w] (patch centres' labels)."""
    hp, wp = grid.shape
    h, w = size
    rows = np.minimum((np.arange(h) * hp) // h, hp - 1)
    cols = np.minimum((np.arange(w) * wp) // w, wp - 1)
    return grid[rows[:, None], cols[None, :]]


def label_masks(full: np.ndarray, n: int | None = None) -> np.ndarray:
    """A label map [h, w] of ids 0..n-1 -> bool [n', h, w], one mask per id that occurs, in id order."""
    n = int(full.max()) + 1 if n is None else n
    masks = full[None] == np.arange(n)[:, None, None]
    return masks[masks.reshape(n, -1).any(1)]


def kmeans_label_grid(patch: np.ndarray, k: int, seed: int = 0, iters: int = 50,
                      spherical: bool = True) -> np.ndarray:
    """Patch grid [Hp, Wp, D] -> cluster label grid [Hp, Wp], ids by first appearance."""
    hp, wp, d = patch.shape
    labels = kmeans(patch.reshape(-1, d), k, seed, iters, spherical)
    return first_appearance(labels).reshape(hp, wp)


def kmeans_label_grids(patch, k: int, seeds=0, iters: int = 50, spherical: bool = True):
    """Patch grids [B, Hp, Wp, D] (tensor or array) -> label grids [B, Hp, Wp] (int64 tensor on the
    input's device): per image what `kmeans_label_grid(patch[b], k, seeds[b], iters, spherical)`
    returns, all images in one batched torch k-means. `seeds`: one int or one per image."""
    from zss.utils.kmeans_torch import kmeans_label_grids as batched

    return batched(patch, k, seeds, iters, spherical)


def image_like_features(b: int, h: int = 40, w: int = 40, d: int = 384, seed: int = 0, rank: int = 48,
                        mean_scale: float = 4.8, regions: tuple[int, int] = (5, 13), waves: int = 3,
                        phase: bool = True, noise: float = 0.5) -> np.ndarray:
    """Fixed backbone-like patch features to compare k-means implementations on (the tests and
    `benchmarks/kmeans.py`): per image `regions` [lo, hi) Voronoi regions of a rank-`rank` feature
    space, `waves` smooth low-frequency sinusoids (random phase if `phase`), `noise` in that space,
    a shared mean of norm ~`mean_scale` and 0.05 noise in all D dims. float32 [b, h, w, d]."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(rank, d)) / np.sqrt(d)
    mean = rng.normal(size=d) * mean_scale / np.sqrt(d)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.empty((b, h, w, d), np.float32)
    for i in range(b):
        r = int(rng.integers(*regions))
        seeds = rng.random((r, 2))
        region = ((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2).argmin(-1)
        f = rng.normal(size=(r, rank))[region]
        for _ in range(waves):
            fy, fx = rng.uniform(0.5, 3), rng.uniform(0.5, 3)
            ph = rng.uniform(0, 6.3) if phase else 0.0
            f += 0.6 * np.sin(2 * np.pi * (fy * yy + fx * xx) + ph)[..., None] * rng.normal(size=rank)
        f += noise * rng.normal(size=(h, w, rank))
        out[i] = f @ basis + mean + 0.05 * rng.normal(size=(h, w, d))
    return out

"""Batched k-means on the device: rows [B, N, D] -> labels [B, N], the same partition as `zss.utils.kmeans`.

One call clusters every image of a batch (each with its own seed) on the tensors' device (CUDA when
they are there). It replaces the per-image float64 numpy `zss.utils.kmeans.kmeans` and returns the
same labels, because it decides the same things:

- the same init: per image a `numpy.random.default_rng(seed)` draws `integers(n)` for the first
  centre, then one `random()` per further centre, read against the cumulative distribution that
  `Generator.choice(n, p=d2 / d2.sum())` reads (float64 d2; no more centres once d2 sums to 0);
- the same Lloyd steps in float64: numpy's assignment (`argmax x @ c.T` spherical, `argmin xx - 2
  x @ c.T + cc` Euclidean, first index on ties), the members' mean or renormalised sum, an empty
  cluster keeps its centre, stop when no label changes or after `iters` assignments.

How it avoids most of the float64 work without changing a label:
- a whole-image assignment is first decided by a float32 matrix product with a proven error bound
  (`_eps`: float32 rounding of a D-term product, doubled); only the rows whose two nearest centres
  are closer than that bound are re-scored in float64 (typically ~0.2 % of the rows);
- after the first assignment a point is re-scored only when another centre could now be nearer
  (Elkan's bounds: an upper bound on the distance to its own centre and a lower bound on the
  distance to each other centre, moved by how far the centres moved); the centre sums follow the
  points that changed cluster;
- every label is thus either computed with numpy's float64 formulas or settled by a margin far
  above float64 rounding (`_SLACK`). The only differences from numpy are float64 summation orders
  (~1e-16 relative): they matter only for a point whose two nearest centres tie to ~1e-15, the same
  exposure as running the numpy version on another BLAS.

On a CPU the init and the first assignment go one cache-sized chunk of images at a time, in one
intra-op thread by default (`threads`: many small operations, where OpenMP fork/join costs more than
it saves). On a GPU the whole batch is one chunk. float32 products run at full precision for the
call (no TF32 / bf16).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch

_SLACK = 1e-12          # float64 squared-distance margin, relative to the image's squared radius
_GROW = 1.0 + 1e-12     # moved bounds are widened by this factor
_UNIT = 1e-13           # spherical: the distance bounds need unit centres to this (else: re-score)
_CPU_CHUNK_BYTES = 12 << 20  # CPU: float64 rows per init chunk (the chunk stays in the cache)
_DOWN, _UP = 1 - 2.0 ** -20, 1 + 2.0 ** -20  # float32 lower bounds: rounded safely down / moves up
_WHOLE = 8              # an image with more than N / _WHOLE points to re-score is re-scored whole
_WHOLE_CHUNK = 8        # CPU: images per whole-image re-scoring call


def _eps(d: int) -> float:
    """A bound on |float32 c.x - c.x| / (|c| |x|) for D-term products of float32-rounded inputs:
    gamma_D = D u / (1 - D u) for the accumulation, 3 u for rounding c, x and the product, doubled."""
    u = 2.0 ** -24
    return 2.0 * (d * u / (1 - d * u) + 3 * u)


@contextlib.contextmanager
def _settings(device: torch.device, threads: int | None) -> Iterator[None]:
    """For the call: float32 matrix products at full precision (no TF32 / bf16 shortcuts), and on
    a CPU `threads` intra-op threads (None: torch's setting)."""
    old = torch.get_float32_matmul_precision()
    old_threads = torch.get_num_threads()
    torch.set_float32_matmul_precision("highest")
    if device.type == "cpu" and threads is not None and threads != old_threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)
        if torch.get_num_threads() != old_threads:
            torch.set_num_threads(old_threads)


def _seeds(seeds: int | Sequence[int], b: int) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        return [int(seeds)] * b
    seeds = [int(s) for s in seeds]
    if len(seeds) != b:
        raise ValueError(f"got {len(seeds)} seeds for {b} images")
    return seeds


class _Rows:
    """The rows as numpy's kmeans sees them (float64; unit rows x / max(|x|, 1e-12) if spherical),
    made on demand from the input x [B, N, D] (a float64 copy of float16 / bfloat16 / float32 values
    is exact), with their squared norms; and float32 products with a bound on their error."""

    def __init__(self, x: torch.Tensor, spherical: bool):
        self.x = x
        self.b, self.n, self.d = x.shape
        self.spherical = spherical
        self.eps = _eps(self.d)
        dev = x.device
        self.div = torch.ones(self.b, self.n, dtype=torch.float64, device=dev)  # spherical: max(|x|, 1e-12)
        self.xx = torch.empty(self.b, self.n, dtype=torch.float64, device=dev)  # |prepared row|^2
        self.r = torch.empty(self.b, self.n, dtype=torch.float64, device=dev)   # |prepared row|
        self.x32 = x if x.dtype == torch.float32 else None

    def prepare(self, sl: slice, out: torch.Tensor) -> torch.Tensor:
        """Prepared float64 rows of images `sl` into `out` [C, N, D]; records their norms."""
        out.copy_(self.x[sl])
        if self.spherical:
            norm = torch.linalg.vector_norm(out, dim=-1)
            self.div[sl] = norm.clamp_min(1e-12)
            out.div_(self.div[sl][..., None])
        torch.sum(out * out, -1, out=self.xx[sl])
        torch.sqrt(self.xx[sl], out=self.r[sl])
        return out

    def take(self, flat: torch.Tensor) -> torch.Tensor:
        """Prepared float64 rows at flat indices [M] -> [M, D]."""
        x = self.x.view(-1, self.d)[flat].to(torch.float64)
        return x.div_(self.div.view(-1)[flat, None]) if self.spherical else x

    def dots32(self, sl: slice | torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """float32 products of the prepared rows of images `sl` (a slice or indices) with their
        centres [C, k, D] -> [C, N, k] (float64 values), each within eps |row| |centre| of the
        exact product."""
        x32 = self.x32[sl] if self.x32 is not None else self.x[sl].float()
        s = torch.bmm(centres.to(torch.float32), x32.transpose(1, 2)).to(torch.float64).transpose(1, 2).contiguous()
        return s.div_(self.div[sl][..., None]) if self.spherical else s


def _pick(d2: torch.Tensor, s: torch.Tensor, valid: torch.Tensor, spherical: bool) -> torch.Tensor:
    """numpy's choice among valid centres: argmax of the products (spherical) or argmin of d2."""
    if spherical:
        return s.masked_fill_(~valid, float("-inf")).argmax(-1)
    return d2.argmin(-1)


def _exact_rows(rows: _Rows, flat: torch.Tensor, li: torch.Tensor, centres: torch.Tensor, cc: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """numpy's float64 assignment of single rows (flat indices into the batch, grouped by image)
    against their image's centres (row m's image is li[m] in `centres` [C, k, D]): labels [M] and
    squared distances [M, k] (inf: no centre). The rows go through one batched product, padded per
    image, over the images that have rows."""
    d, dev = rows.d, flat.device
    per = torch.bincount(li, minlength=centres.shape[0])
    imgs = per.nonzero()[:, 0]
    per = per[imgs]
    slot = torch.zeros(centres.shape[0], dtype=torch.int64, device=dev)
    slot[imgs] = torch.arange(imgs.numel(), device=dev)
    si = slot[li]
    rank = torch.arange(flat.numel(), device=dev) - (torch.cumsum(per, 0) - per)[si]
    pad = centres.new_zeros(imgs.numel(), int(per.max()), d)
    pad[si, rank] = rows.take(flat)
    s = torch.bmm(pad, centres[imgs].transpose(1, 2))[si, rank]       # [M, k]
    d2 = rows.xx.view(-1)[flat][:, None] - 2 * s + cc[li]
    bad = ~valid[li]
    d2.masked_fill_(bad, float("inf"))
    return _pick(d2, s, valid[li], rows.spherical), d2


def _assign(rows: _Rows, imgs: slice | torch.Tensor, centres: torch.Tensor, cc: torch.Tensor,
            valid: torch.Tensor, slack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """numpy's assignment of every row of images `imgs` (a slice or indices: C images; centres
    [C, k, D]): labels [C, N], squared distances [C, N, k] and their error [C, N] (0 where computed
    in float64). A float32 product decides where its error bound allows; the rows whose two
    nearest centres are too close for it are re-scored in float64."""
    s = rows.dots32(imgs, centres)                                      # [C, N, k]
    d2 = rows.xx[imgs][..., None] - 2 * s + cc[:, None, :]
    d2.masked_fill_(~valid[:, None, :], float("inf"))
    best, labels = d2.min(-1)
    second = d2.scatter(-1, labels[..., None], float("inf")).amin(-1)
    err = 2 * rows.eps * rows.r[imgs] * cc.clamp_min(0).sqrt().amax(1, keepdim=True)   # [C, N]
    sure = second - best > 2 * err + slack
    if rows.spherical:  # argmax x.c is argmin |x - c| only for unit centres
        sure &= ~(((cc - 1).abs() > _UNIT) & valid).any(1, keepdim=True)
    unsure = (~sure).view(-1).nonzero()[:, 0]
    if unsure.numel():
        n = rows.n
        li = unsure // n
        img = (li + imgs.start) if isinstance(imgs, slice) else imgs[li]
        lab, ex = _exact_rows(rows, img * n + unsure % n, li, centres, cc, valid)
        labels.view(-1)[unsure] = lab
        d2.view(-1, d2.shape[-1])[unsure] = ex
        err.view(-1)[unsure] = 0.0
    return labels, d2, err


def _kmeanspp(x: torch.Tensor, xx: torch.Tensor, k: int,
              rngs: list[np.random.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ centres [C, k, D] and which of them are real [C, k] for prepared rows x [C, N, D],
    drawn exactly as `zss.utils.kmeans.kmeans` draws them (one numpy Generator per image)."""
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
    d2 = torch.full((c_, n), float("inf"), dtype=torch.float64, device=dev)
    xt = x.transpose(1, 2)
    for j in range(1, k):
        c = centres[:, j - 1]  # numpy: d2 = min(d2, ((x - c) ** 2).sum(1)), here as xx - 2 x.c + cc
        dist = torch.bmm(c[:, None, :], xt)[:, 0].mul_(-2).add_(xx).add_((c * c).sum(-1, keepdim=True))
        torch.minimum(d2, dist.clamp_min_(0.0), out=d2)
        totals = d2.sum(1).tolist()
        for i, t in enumerate(totals):
            if active[i] and t <= tiny[i]:  # maybe only duplicates of centres left: numpy's exact zeros
                d2[i] = torch.cdist(x[i], centres[i, :j], compute_mode="donot_use_mm_for_euclid_dist"
                                    ).amin(1) ** 2
                totals[i] = float(d2[i].sum())
        active = [a and t > 0 for a, t in zip(active, totals)]  # numpy: `if total <= 0: break`
        if not any(active):
            break
        total = torch.as_tensor(totals, dtype=torch.float64, device=dev)
        cdf = torch.cumsum(d2 / total[:, None], 1)
        cdf /= cdf[:, -1:].clone()
        u = torch.as_tensor([g.random() if a else 0.0 for g, a in zip(rngs, active)],
                            dtype=torch.float64, device=dev)
        pick = torch.searchsorted(cdf, u[:, None], right=True)[:, 0].clamp_(0, n - 1)
        if all(active):
            centres[:, j] = x[ar, pick]
            valid[:, j] = True
        else:
            act = torch.as_tensor(active, device=dev)
            centres[:, j] = torch.where(act[:, None], x[ar, pick], centres[:, j])
            valid[:, j] = act
    return centres, valid


def _groups(mask: torch.Tensor, size: int) -> list[slice]:
    """The True entries of a 1-D bool tensor as slices of consecutive indices, at most `size` long."""
    out: list[slice] = []
    lo = None
    for i, v in enumerate(mask.tolist() + [False]):
        if v and lo is None:
            lo = i
        if lo is not None and (not v or i - lo == size):
            out.append(slice(lo, i))
            lo = i if v else None
    return out


class _Lloyd:
    """Lloyd steps over the whole batch from a first assignment, with Elkan's bounds: per point an
    upper bound on the distance to its own centre and a lower bound on the distance to each other
    centre, moved by how far the centres move. A point is re-scored only when some other centre
    could be nearer than its own by less than the margin."""

    def __init__(self, rows: _Rows, centres, valid, labels, d2, err, csum, count, group: int):
        self.rows, self.group = rows, group
        self.b, self.n, self.d, self.k = rows.b, rows.n, rows.d, centres.shape[1]
        dev = centres.device
        self.centres, self.valid, self.labels, self.csum, self.count = centres, valid, labels, csum, count
        slack = rows.xx.amax(1) * 4 * _SLACK
        self.slack = slack[:, None]                        # [B, 1] squared-distance margin
        self.margin = slack.sqrt()[:, None]                # l > u + margin  =>  l^2 - u^2 > slack
        self.done = torch.zeros(self.b, dtype=torch.bool, device=dev)
        self.base = torch.arange(self.b, device=dev) * self.k
        self.upper = torch.empty(self.b, self.n, dtype=torch.float64, device=dev)
        # float32 lower bounds (stored rounded down, moved by rounded-up amounts; the float32
        # rounding of up to `iters` moves is covered by `margin32`)
        self.lower = torch.empty(self.b, self.n, self.k, dtype=torch.float32, device=dev)
        self.margin32 = self.margin + 1e-5 * rows.xx.amax(1).sqrt()[:, None]
        self._set_bounds(slice(None), labels, d2, err)

    def _set_bounds(self, imgs, labels: torch.Tensor, d2: torch.Tensor, err: torch.Tensor | None,
                    flat: torch.Tensor | None = None) -> None:
        """Bounds from squared distances: of whole images `imgs` (slice or indices; labels [C, N],
        d2 [C, N, k], err [C, N]) or, with `flat`, of single rows (labels [M], d2 [M, k], exact)."""
        pad = self.slack[imgs] + err if flat is None else self.slack[flat // self.n, 0]
        own = d2.gather(-1, labels[..., None])[..., 0]
        up = (own.clamp_min(0) + pad).sqrt_()
        lo = (d2 - pad[..., None]).clamp_min_(0).sqrt_().mul_(_DOWN).scatter_(-1, labels[..., None], float("inf"))
        if flat is None:
            self.upper[imgs], self.lower[imgs] = up, lo.to(torch.float32)
        else:
            self.upper.view(-1)[flat] = up
            self.lower.view(-1, self.k)[flat] = lo.to(torch.float32)

    def step(self) -> None:
        """Centres from the labels, then numpy's assignment for every point that could change."""
        b, n, d, k = self.b, self.n, self.d, self.k
        rows = self.rows
        # numpy: the members' mean, or their renormalised sum; an empty cluster keeps its centre
        if rows.spherical:
            new = self.csum / torch.linalg.vector_norm(self.csum, dim=-1, keepdim=True).clamp_min(1e-12)
        else:
            new = self.csum / self.count.clamp_min(1)[..., None]
        new = torch.where((self.count == 0)[..., None] | self.done[:, None, None], self.centres, new)
        moved = torch.linalg.vector_norm(new - self.centres, dim=-1).mul_(_GROW)    # [B, k]
        self.centres = new
        cc = (new * new).sum(-1)
        active = ~self.done
        if rows.spherical:  # argmax x.c is argmin |x - c| only for unit centres
            force = (((cc - 1).abs() > _UNIT) & self.valid).any(1) & active
        else:
            force = torch.zeros_like(active)

        # Move the bounds with the centres; a point needs a look if another centre may be nearer.
        self.upper.add_(moved.gather(1, self.labels)).mul_(_GROW)
        self.lower.sub_((moved * _UP).to(torch.float32)[:, None, :])
        need = (self.lower <= (self.upper + self.margin32).to(torch.float32)[..., None]).any(-1)
        need &= active[:, None]
        need |= force[:, None]

        changed = torch.zeros(b, dtype=torch.bool, device=new.device)
        whole = need.sum(1) > n // _WHOLE
        idx = (need & ~whole[:, None]).view(-1).nonzero()[:, 0]
        if idx.numel():
            lab, d2 = _exact_rows(rows, idx, idx // n, new, cc, self.valid)
            self._set_bounds(None, lab, d2, None, flat=idx)
            changed |= self._relabel(idx, lab)
        for imgs in _groups(whole, self.group):  # contiguous slices of images: no copies
            lab, d2, err = _assign(rows, imgs, new[imgs], cc[imgs], self.valid[imgs], self.slack[imgs])
            self._set_bounds(imgs, lab, d2, err)
            changed |= self._relabel(torch.arange(imgs.start * n, imgs.stop * n, device=new.device), lab.view(-1))
        self.done |= ~changed  # numpy: `if np.array_equal(new, labels): break`

    def _relabel(self, flat: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        """New labels of rows (flat indices): the rows that changed cluster move, with their sums
        and counts; returns which images changed [B]."""
        changed = torch.zeros(self.b, dtype=torch.bool, device=flat.device)
        moved = lab != self.labels.view(-1)[flat]
        if not bool(moved.any()):
            return changed
        flat, new = flat[moved], lab[moved]
        bi = flat // self.n
        changed[bi] = True
        old = self.labels.view(-1)[flat]
        vec = self.rows.take(flat)
        frm, to = self.base[bi] + old, self.base[bi] + new
        s, c = self.csum.view(-1, self.d), self.count.view(-1)
        s.index_add_(0, frm, vec, alpha=-1)
        s.index_add_(0, to, vec)
        ones = torch.ones(flat.numel(), dtype=c.dtype, device=c.device)
        c.index_add_(0, frm, ones, alpha=-1)
        c.index_add_(0, to, ones)
        self.labels.view(-1)[flat] = new
        return changed


@torch.no_grad()
def kmeans(x: torch.Tensor | np.ndarray, k: int, seeds: int | Sequence[int] = 0, iters: int = 50,
           spherical: bool = True, chunk: int | None = None, threads: int | None = 1) -> torch.Tensor:
    """Labels [B, N] (int64, on x's device) of batched rows x [B, N, D]: per image, what
    `zss.utils.kmeans.kmeans(x[b], k, seeds[b], iters, spherical)` returns. `seeds`: one int for all
    images or one per image. `chunk`: images per init chunk (default: the whole batch on a GPU,
    about 12 MB of float64 rows on a CPU). `threads`: CPU intra-op threads for the call (default
    1: the steps are many small operations, and OpenMP fork/join across threads costs more than it
    saves, badly so on a shared machine; None keeps torch's setting)."""
    x = torch.as_tensor(x)
    if x.dim() != 3:
        raise ValueError(f"kmeans wants rows [B, N, D], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    x = x.contiguous()
    b, n, d = x.shape
    dev = x.device
    if b == 0 or n == 0:
        return torch.zeros(b, n, dtype=torch.int64, device=dev)
    seeds = _seeds(seeds, b)
    k = max(1, min(int(k), n))
    if chunk is None:
        chunk = b if dev.type != "cpu" else max(1, _CPU_CHUNK_BYTES // (n * d * 8))
    chunk = min(chunk, b)
    with _settings(dev, threads):
        rows = _Rows(x, spherical)
        centres = torch.empty(b, k, d, dtype=torch.float64, device=dev)
        valid = torch.empty(b, k, dtype=torch.bool, device=dev)
        labels = torch.empty(b, n, dtype=torch.int64, device=dev)
        d2 = torch.empty(b, n, k, dtype=torch.float64, device=dev)
        err = torch.empty(b, n, dtype=torch.float64, device=dev)
        csum = torch.zeros(b * k, d, dtype=torch.float64, device=dev)
        count = torch.zeros(b * k, dtype=torch.float64, device=dev)
        buf = torch.empty(chunk, n, d, dtype=torch.float64, device=dev)
        for lo in range(0, b, chunk):  # init and first assignment, one cache-sized chunk at a time
            sl = slice(lo, min(lo + chunk, b))
            xc = rows.prepare(sl, buf[: sl.stop - lo])
            slack = (rows.xx[sl].amax(1) * 4 * _SLACK)[:, None]
            cent, val = _kmeanspp(xc, rows.xx[sl], k, [np.random.default_rng(s) for s in seeds[sl]])
            centres[sl], valid[sl] = cent, val
            labels[sl], d2[sl], err[sl] = _assign(rows, sl, cent, (cent * cent).sum(-1), val, slack)
            flat = (labels[sl] + torch.arange(lo, sl.stop, device=dev)[:, None] * k).view(-1)
            csum.index_add_(0, flat, xc.reshape(-1, d))
            count.index_add_(0, flat, torch.ones(flat.numel(), dtype=torch.float64, device=dev))
        del buf
        group = _WHOLE_CHUNK if dev.type == "cpu" else b
        lloyd = _Lloyd(rows, centres, valid, labels, d2, err, csum.view(b, k, d), count.view(b, k), group)
        del d2, err
        for _ in range(1, iters):
            lloyd.step()
            if bool(lloyd.done.all()):
                break
    return lloyd.labels


def first_appearance(labels: torch.Tensor) -> torch.Tensor:
    """Per row of labels [B, N], cluster ids renumbered 0..n-1 by first appearance (as
    `zss.utils.kmeans.first_appearance` per image)."""
    b, n = labels.shape
    k = int(labels.max()) + 1 if labels.numel() else 1
    pos = torch.arange(n, device=labels.device).expand(b, n)
    first = torch.full((b, k), n, dtype=torch.int64, device=labels.device)
    first.scatter_reduce_(1, labels, pos, reduce="amin")
    rank = first.argsort(1).argsort(1)  # present clusters (first < n) come first, in order
    return rank.gather(1, labels)


def kmeans_label_grids(patch: torch.Tensor | np.ndarray, k: int, seeds: int | Sequence[int] = 0,
                       iters: int = 50, spherical: bool = True, chunk: int | None = None,
                       threads: int | None = 1) -> torch.Tensor:
    """Patch grids [B, Hp, Wp, D] -> label grids [B, Hp, Wp], ids by first appearance: per image
    what `zss.utils.kmeans.kmeans_label_grid` returns."""
    patch = torch.as_tensor(patch)
    b, hp, wp, d = patch.shape
    labels = kmeans(patch.reshape(b, hp * wp, d), k, seeds, iters, spherical, chunk, threads)
    return first_appearance(labels).view(b, hp, wp)


def upsample_labels(grid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling of label grids [B, Hp, Wp] to [B, h, w] (as `zss.utils.kmeans.upsample_labels`)."""
    _, hp, wp = grid.shape
    h, w = size
    rows = torch.clamp((torch.arange(h, device=grid.device) * hp) // h, max=hp - 1)
    cols = torch.clamp((torch.arange(w, device=grid.device) * wp) // w, max=wp - 1)
    return grid[:, rows[:, None], cols[None, :]]

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
- an assignment is decided by a float32 product `cc - 2 x.c` with a proven error bound (`_eps`:
  float32 rounding of a (D + 2)-term sum, doubled); only the rows whose two nearest centres are
  closer than that bound are re-scored in float64 (~0.1 % of the rows of the benchmark batch);
- after the first assignment a point is looked at only when another centre could now be nearer
  (Elkan's bounds, kept in float32 and rounded outwards: an upper bound on the distance to its own
  centre and a lower bound on the distance to each other centre, moved by how far the centres
  moved); the centre sums follow the points that changed cluster; an image whose labels stopped
  changing leaves the batch's working set;
- every label is thus either computed with numpy's float64 formulas or settled by a margin far
  above float64 rounding (`_SLACK`). The only differences from numpy are float64 summation orders
  (~1e-16 relative): they matter only for a point whose two nearest centres tie to ~1e-15, the same
  exposure as running the numpy version on another BLAS.

The k-means++ init (`zss.utils.kmeans_init`) is the float64 part that cannot be avoided (each
centre depends on the float64 distances to the previous ones): on a CPU it runs one cache-sized
chunk of images at a time, one matrix-vector product per image and centre, in one intra-op thread
by default (`threads`: many small operations, where OpenMP fork/join costs more than it saves;
`threads=t` clusters t parts of the batch in t Python threads instead). On a GPU the whole batch is
one chunk. float32 products run at full precision for the call (no TF32 / bf16).
"""

from __future__ import annotations

import contextlib
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np
import torch

from zss.utils.kmeans_init import kmeanspp

_SLACK = 1e-12          # float64 squared-distance margin, relative to the image's squared radius
_GROW = 1.0 + 1e-12     # centre moves are widened by this factor
_UNIT = 1e-13           # spherical: the distance bounds need unit centres to this (else: re-score)
_CPU_CHUNK_BYTES = 12 << 20  # CPU: float64 rows per init chunk (the chunk stays in the cache)
_DOWN, _UP = 1 - 2.0 ** -20, 1 + 2.0 ** -20  # float32 bounds: rounded safely down / up
_WHOLE = 0.5            # an image with more than this share of rows to look at is re-scored whole
_COMPACT = 8            # finished images leave the working set once 1 / _COMPACT of it is done
_U32 = 2.0 ** -24       # float32 unit roundoff
_F32, _F64 = torch.float32, torch.float64


def _eps(d: int) -> float:
    """A bound on |float32 c.x - c.x| / (|c| |x|) for D-term products of float32-rounded inputs:
    gamma_D = D u / (1 - D u) for the accumulation, 3 u for rounding c, x and the product, doubled."""
    u = _U32
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
    is exact), their norms, and the input rows in float32 `xs` for the float32 products (x itself
    for float32 input; spherical products are divided by `div` afterwards)."""

    def __init__(self, x: torch.Tensor, spherical: bool):
        self.x = x
        self.b, self.n, self.d = x.shape
        self.spherical = spherical
        self.eps = _eps(self.d + 2) + 4 * _U32  # cc - 2 x.c: a (D + 2)-term sum; + xx: two roundings
        dev = x.device
        self.div = torch.ones(self.b, self.n, dtype=_F64, device=dev)  # spherical: max(|x|, 1e-12)
        self.xx = torch.empty(self.b, self.n, dtype=_F64, device=dev)  # |prepared row|^2
        self.r = torch.empty(self.b, self.n, dtype=_F64, device=dev)   # |prepared row|
        self.xs = x if x.dtype == _F32 else x.to(_F32)

    def prepare(self, sl: slice, out: torch.Tensor) -> torch.Tensor:
        """Prepared float64 rows of images `sl` into `out` [C, N, D]; records their norms."""
        out.copy_(self.x[sl])
        norm = torch.linalg.vector_norm(out, dim=-1)
        if self.spherical:
            div = norm.clamp_min(1e-12)
            self.div[sl] = div
            out.div_(div[..., None])
            norm = norm / div
        self.r[sl] = norm
        self.xx[sl] = norm * norm
        return out

    def take(self, flat: torch.Tensor) -> torch.Tensor:
        """Prepared float64 rows at flat indices [M] -> [M, D]."""
        x = self.x.view(-1, self.d).index_select(0, flat).to(_F64)
        return x.div_(self.div.view(-1).index_select(0, flat)[:, None]) if self.spherical else x


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
    d2.masked_fill_(~valid[li], float("inf"))
    return _pick(d2, s, valid[li], rows.spherical), d2


def _score(rows: _Rows, srcs: list[torch.Tensor], g: torch.Tensor, xx: torch.Tensor, r: torch.Tensor,
           div: torch.Tensor, centres: torch.Tensor, cc: torch.Tensor, valid: torch.Tensor, slack: torch.Tensor):
    """float32 assignment of M rows to their image's centres [G, k, D] (cc [G, k] their squared
    norms, valid [G, k]). srcs[i] [M_i, D]: image i's input rows in float32 (spherical: not yet
    divided by their norms), g [M]: each row's image, xx and r [M]: the prepared rows' float64
    squared norms and norms, div [M]: the spherical divisors. Returns labels [M], squared distances
    d2 [M, k] (float32), a bound err [M] on their error, and `sure` [M]: where the float32 scores
    prove numpy's float64 label (the two nearest differ by > 2 err + slack)."""
    c32, cc32 = centres.to(_F32), cc.to(_F32)
    t = torch.empty(g.numel(), centres.shape[1], dtype=_F32, device=g.device)
    pos = 0
    for i, src in enumerate(srcs):  # x.c (cc - 2 x.c for Euclidean rows), one product per image
        if rows.spherical:
            torch.mm(src, c32[i].T, out=t[pos: pos + src.shape[0]])
        else:
            torch.addmm(cc32[i], src, c32[i].T, alpha=-2, out=t[pos: pos + src.shape[0]])
        pos += src.shape[0]
    if rows.spherical:  # unit rows: cc - 2 (x / div).c
        t = torch.addcdiv(cc32.index_select(0, g), t, div.to(_F32)[:, None], value=-2)
    if not bool(valid.all()):
        t.masked_fill_(~valid[g], float("inf"))
    best, labels = t.min(-1)
    second = t.scatter_(-1, labels[:, None], float("inf")).amin(-1)
    t.scatter_(-1, labels[:, None], best[:, None])
    cmax = cc.clamp_min(0).amax(1).sqrt().index_select(0, g)
    et = rows.eps * (cmax * cmax + 2 * r * cmax)                       # |float32 t - t|
    sure = second.to(_F64) - best.to(_F64) > 2 * et + slack[g, 0]
    if rows.spherical:  # argmax x.c is argmin |x - c| only for unit centres
        sure &= ~(((cc - 1).abs() > _UNIT) & valid).any(1)[g]
    return labels, t.add_(xx.to(_F32)[:, None]), et + rows.eps * xx, sure


def _bounds(d2: torch.Tensor, labels: torch.Tensor, pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Elkan bounds (float32, rounded outwards) from squared distances d2 [M, k] known to within
    pad [M]: upper [M] on the distance to the own centre, lower [M, k] on the others (own: inf)."""
    p = (pad * _UP).to(d2.dtype)[:, None]
    own = d2.gather(-1, labels[:, None])
    up = own.add_(p).sqrt_().mul_(_UP).to(_F32)[:, 0]
    lo = (d2 - p).clamp_min_(0).sqrt_().mul_(_DOWN).to(_F32).scatter_(-1, labels[:, None], float("inf"))
    return up, lo


def _look(rows: _Rows, srcs: list[torch.Tensor], g: torch.Tensor, orig: torch.Tensor,
          centres: torch.Tensor, cc: torch.Tensor, valid: torch.Tensor, slack: torch.Tensor):
    """numpy's labels and new bounds of M rows (`orig` [M]: flat indices in the batch; srcs, g:
    as `_score`) against centres [G, k, D]. Rows the float32 scores leave unsure are re-scored in
    float64. Returns labels [M], upper [M], lower [M, k]."""
    xx, r, div = (None if v is None else v.view(-1).index_select(0, orig)
                  for v in (rows.xx, rows.r, rows.div if rows.spherical else None))
    lab, d2, err, sure = _score(rows, srcs, g, xx, r, div, centres, cc, valid, slack)
    up, lo = _bounds(d2, lab, err + slack[g, 0])
    u = (~sure).nonzero()[:, 0]
    if u.numel():
        lab_u, d2_u = _exact_rows(rows, orig[u], g[u], centres, cc, valid)
        lab[u] = lab_u
        up[u], lo[u] = _bounds(d2_u, lab_u, slack[g[u], 0])
    return lab, up, lo


class _Lloyd:
    """Lloyd steps over the images still changing, from their first assignment, with Elkan's
    bounds (upper [A, N] to the own centre, lower [A, N, k] to each centre; float32, rounded
    outwards, moved by how far the centres move). A point is re-scored only when some other centre
    could be nearer than its own by less than the margin. `ids` [A]: the images in the working set;
    finished images write their labels to `out` and leave it."""

    def __init__(self, rows: _Rows, out: torch.Tensor, sl: slice, centres, valid, csum, count, upper, lower):
        self.rows, self.out = rows, out
        self.n, self.d, self.k = rows.n, rows.d, centres.shape[1]
        self.ids = torch.arange(sl.start, sl.stop, device=out.device)
        self.labels = out[sl].clone()
        self.centres, self.valid, self.csum, self.count = centres, valid, csum, count
        self.upper, self.lower = upper, lower
        top = rows.xx[sl].amax(1)[:, None]
        self.slack = top * 4 * _SLACK                                   # [A, 1] squared-distance margin
        # l > u + margin  =>  l^2 - u^2 > slack; plus the float32 rounding of up to 50 moves of l
        self.margin32 = (self.slack.sqrt() + 1e-5 * top.sqrt()).to(_F32)

    def run(self, steps: int) -> torch.Tensor:
        for _ in range(steps):
            changed = self.step()
            done = int((~changed).sum())
            if done == self.ids.numel():
                break
            if done and done * _COMPACT >= self.ids.numel():
                self._keep(changed)
        self.out[self.ids] = self.labels
        return self.out

    def _keep(self, keep: torch.Tensor) -> None:
        """Write the finished images' labels out; keep the others' state."""
        self.out[self.ids[~keep]] = self.labels[~keep]
        for name in ("ids", "labels", "centres", "valid", "csum", "count", "upper", "lower", "slack", "margin32"):
            setattr(self, name, getattr(self, name)[keep])

    def step(self) -> torch.Tensor:
        """Centres from the labels, then numpy's assignment for every point that could change.
        Returns which images of the working set changed [A]."""
        n, rows = self.n, self.rows
        # numpy: the members' mean, or their renormalised sum; an empty cluster keeps its centre
        if rows.spherical:
            new = self.csum / torch.linalg.vector_norm(self.csum, dim=-1, keepdim=True).clamp_min(1e-12)
        else:
            new = self.csum / self.count.clamp_min(1)[..., None]
        new = torch.where((self.count == 0)[..., None], self.centres, new)
        moved = torch.linalg.vector_norm(new - self.centres, dim=-1).mul_(_GROW * _UP).to(_F32)   # [A, k]
        self.centres = new
        cc = (new * new).sum(-1)
        # Move the bounds with the centres; a point needs a look if another centre may be nearer.
        self.upper.add_(moved.gather(1, self.labels)).mul_(_UP)
        self.lower.sub_(moved[:, None, :])
        need = self.lower.amin(-1) <= self.upper + self.margin32
        if rows.spherical:  # argmax x.c is argmin |x - c| only for unit centres
            need |= (((cc - 1).abs() > _UNIT) & self.valid).any(1)[:, None]
        return self._look(need)

    def _look(self, need: torch.Tensor) -> torch.Tensor:
        """Re-score the rows that need it (need [A, N]; an image with more than _WHOLE of its rows
        needing it is re-scored whole, from a view of its rows; the others' rows are gathered), set
        their bounds and labels; returns which images changed."""
        rows, n, dev = self.rows, self.n, need.device
        cnt = need.sum(1)
        imgs = cnt.nonzero()[:, 0]
        if not imgs.numel():
            return torch.zeros(self.ids.numel(), dtype=torch.bool, device=dev)
        whole = cnt[imgs] > n * _WHOLE
        need[imgs[whole]] = True
        flat = need.view(-1).nonzero()[:, 0]
        li = flat // n
        orig = self.ids[li] * n + flat % n
        slot = torch.zeros_like(self.ids)
        slot[imgs] = torch.arange(imgs.numel(), device=dev)
        g = slot[li]
        gathered = rows.xs.view(-1, self.d).index_select(0, orig[~whole[g]])
        srcs, pos = [], 0
        for c, w, i in zip(cnt[imgs].tolist(), whole.tolist(), self.ids[imgs].tolist()):
            if w:
                srcs.append(rows.xs[i])
            else:
                srcs.append(gathered[pos: pos + c])
                pos += c
        cent = self.centres[imgs]
        lab, up, lo = _look(rows, srcs, g, orig, cent, (cent * cent).sum(-1), self.valid[imgs], self.slack[imgs])
        if flat.numel() == self.upper.numel():  # every row of the working set
            self.upper.view(-1).copy_(up)
            self.lower.view(-1, self.k).copy_(lo)
        else:
            self.upper.view(-1)[flat] = up
            self.lower.view(-1, self.k)[flat] = lo
        return self._relabel(flat, orig, lab)

    def _relabel(self, flat: torch.Tensor, orig: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        """New labels of rows (flat indices of the working set, `orig` in the batch): the rows that
        changed cluster move, with their sums and counts; returns which images changed."""
        changed = torch.zeros(self.ids.numel(), dtype=torch.bool, device=flat.device)
        old = self.labels.view(-1).index_select(0, flat)
        moved = lab != old
        if not bool(moved.any()):
            return changed
        flat, orig, new = flat[moved], orig[moved], lab[moved]
        bi = flat // self.n
        changed[bi] = True
        base = bi * self.k
        frm, to = base + old[moved], base + new
        vec = self.rows.take(orig)
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
    about 12 MB of float64 rows on a CPU). `threads` (CPU): 1 (default) runs the call in one
    intra-op thread (the steps are many small operations, where OpenMP fork/join costs more than it
    saves); t > 1 splits the images into t parts clustered by t Python threads, one intra-op
    thread each (torch releases the GIL in its kernels); None keeps torch's own setting."""
    x = torch.as_tensor(x)
    if x.dim() != 3:
        raise ValueError(f"kmeans wants rows [B, N, D], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(_F64)
    x = x.contiguous()
    b, n, d = x.shape
    dev = x.device
    seeds = _seeds(seeds, b)
    k = max(1, min(int(k), n))
    if b == 0 or n == 0 or k == 1:  # one cluster: numpy's labels are all 0
        return torch.zeros(b, n, dtype=torch.int64, device=dev)
    if chunk is None:
        chunk = b if dev.type != "cpu" else max(1, _CPU_CHUNK_BYTES // (n * d * 8))
    parallel = dev.type == "cpu" and threads is not None and threads > 1 and b > 1
    group = -(-b // threads) if parallel else b
    with _settings(dev, 1 if parallel else threads):
        rows = _Rows(x, spherical)
        labels = torch.empty(b, n, dtype=torch.int64, device=dev)
        run = functools.partial(_group, rows, labels, k, seeds, iters, min(chunk, group), parallel)
        groups = [slice(g0, min(g0 + group, b)) for g0 in range(0, b, group)]
        if parallel:  # CPU threads: each clusters its own images, one intra-op thread each
            with ThreadPoolExecutor(len(groups)) as pool:
                list(pool.map(run, groups))
        else:
            run(groups[0])
        return labels


def _group(rows: _Rows, labels: torch.Tensor, k: int, seeds: list[int], iters: int, chunk: int,
           own_thread: bool, gs: slice) -> None:
    """k-means of images `gs` into `labels`: init and first assignment one cache-sized chunk at a
    time, then the Lloyd steps."""
    if own_thread:
        torch.set_num_threads(1)
    n, d, dev = rows.n, rows.d, labels.device
    m = gs.stop - gs.start
    state = (torch.empty(m, k, d, dtype=_F64, device=dev), torch.empty(m, k, dtype=torch.bool, device=dev),
             torch.zeros(m, k, d, dtype=_F64, device=dev), torch.zeros(m, k, dtype=_F64, device=dev),
             torch.empty(m, n, dtype=_F32, device=dev), torch.empty(m, n, k, dtype=_F32, device=dev))
    buf = torch.empty(chunk, n, d, dtype=_F64, device=dev)
    for lo in range(gs.start, gs.stop, chunk):
        sl = slice(lo, min(lo + chunk, gs.stop))
        _first(rows, rows.prepare(sl, buf[: sl.stop - lo]), sl, gs.start, k, seeds[sl], labels, state)
    _Lloyd(rows, labels, gs, *state).run(iters - 1)


def _first(rows: _Rows, xc: torch.Tensor, sl: slice, g0: int, k: int, seeds: list[int], labels: torch.Tensor,
           state: tuple[torch.Tensor, ...]) -> None:
    """The k-means++ init and first assignment of images `sl` (prepared float64 rows xc), into
    `labels` and the state of their group (first image g0): centres, valid, sums, counts, bounds."""
    centres, valid, csum, count, upper, lower = state
    n, d, dev = rows.n, rows.d, xc.device
    cent, val = kmeanspp(xc, rows.xx[sl], k, [np.random.default_rng(s) for s in seeds])
    gl = slice(sl.start - g0, sl.stop - g0)
    centres[gl], valid[gl] = cent, val
    slack = (rows.xx[sl].amax(1) * 4 * _SLACK)[:, None]
    orig = torch.arange(sl.start * n, sl.stop * n, device=dev)
    g = torch.arange(sl.stop - sl.start, device=dev).repeat_interleave(n)
    lab, upper[gl].view(-1)[:], lower[gl].view(-1, k)[:] = _look(
        rows, list(rows.xs[sl]), g, orig, cent, (cent * cent).sum(-1), val, slack)
    labels[sl] = lab.view(-1, n)
    flat = lab + (orig // n - g0) * k
    csum.view(-1, d).index_add_(0, flat, xc.reshape(-1, d))
    count.view(-1).index_add_(0, flat, torch.ones(flat.numel(), dtype=_F64, device=dev))

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

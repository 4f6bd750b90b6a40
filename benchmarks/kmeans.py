"""k-means benchmark: batched torch (zss.utils.kmeans_torch) vs zss's per-image numpy, on one batch of
B x 40 x 40 x 384 patch features (the `dino` / `dino-online` shape: ViT-S/16 at 640), k = 16,
both metrics. Prints seconds per batch (best of --repeat, wall and process CPU time), the ratios,
and checks that every image gets the same partition.

numpy runs as zss runs it (OpenBLAS with its default threads) and with one BLAS thread
(threadpoolctl); torch with `threads=1` (kmeans_torch's default: one intra-op thread) and
`threads=2` (two Python threads, each clustering half of the images in one intra-op thread). The
runs are interleaved (one round = every variant once; best of --repeat rounds), so that a shared
machine's load falls on all of them alike; the load average is printed before and after.

    python benchmarks/kmeans.py [--batch 48] [--repeat 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from zss.utils.kmeans_torch import kmeans
from zss.utils.kmeans import first_appearance, image_like_features as image_like, kmeans as np_kmeans


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def run_variants(variants: dict, repeat: int) -> dict:
    """Interleaved rounds; per variant the output and the best wall and CPU seconds."""
    best = {name: [None, float("inf"), float("inf")] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            w, c = time.perf_counter(), time.process_time()
            out = fn()
            rec = best[name]
            rec[0] = out
            rec[1] = min(rec[1], time.perf_counter() - w)
            rec[2] = min(rec[2], time.process_time() - c)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--noise", action="store_true", help="i.i.d. Gaussian features instead (worst case)")
    args = ap.parse_args()
    b, k, iters = args.batch, args.k, args.iters
    if args.noise:
        feats = np.random.default_rng(0).normal(size=(b, 40, 40, 384)).astype(np.float32)
    else:
        feats = image_like(b)
    rows = feats.reshape(b, -1, feats.shape[-1])
    seeds = list(range(b))
    dev = torch.device(args.device)
    print(f"# k-means, batch {b} x {feats.shape[1]}x{feats.shape[2]} x {feats.shape[3]} "
          f"({'noise' if args.noise else 'image-like'}), k={k}, iters<={iters}, device {dev}, "
          f"{os.cpu_count()} CPUs, best of {args.repeat} interleaved rounds, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {load()}")
    x = torch.from_numpy(rows).to(dev)
    for spherical in (True, False):
        name = "cosine (feature-kmeans)" if spherical else "euclidean (dino, dino-online)"

        def run_np(blas_threads=None):
            with threadpool_limits(blas_threads):
                return [np_kmeans(r, k, s, iters, spherical) for r, s in zip(rows, seeds)]

        def run_torch(threads=1):
            out = kmeans(x, k, seeds, iters, spherical, threads=threads)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            return out.cpu().numpy()

        run_torch()  # warm-up
        variants = {"numpy, zss as it ran (BLAS default threads)": run_np,
                    "numpy, 1 BLAS thread": lambda: run_np(1),
                    f"torch batched, threads=1 ({dev.type})": run_torch}
        if dev.type == "cpu":
            variants["torch batched, threads=2 (2 Python threads)"] = lambda: run_torch(2)
        best = run_variants(variants, args.repeat)
        ref = best["numpy, zss as it ran (BLAS default threads)"][0]
        print(f"\n## {name}")
        print(f"{'run':46s} {'wall s':>8s} {'cpu s':>8s} {'same':>6s}")
        for label, (out, w, c) in best.items():
            same = sum(np.array_equal(first_appearance(r), first_appearance(g)) for r, g in zip(ref, out))
            print(f"{label:46s} {w:8.3f} {c:8.3f} {same:3d}/{b}")
        names = list(best)
        np_w, np_c = best[names[0]][1:]
        np1_w, np1_c = best[names[1]][1:]
        for label in names[2:]:
            w, c = best[label][1:]
            print(f"{label}: vs numpy as zss ran it {np_w / w:.1f}x wall, {np_c / c:.1f}x cpu; "
                  f"vs numpy 1 BLAS thread {np1_w / w:.1f}x wall, {np1_c / c:.1f}x cpu")
    print(f"\n# done {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {load()}")


if __name__ == "__main__":
    main()

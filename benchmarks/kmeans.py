"""k-means benchmark: batched torch (zss.utils.kmeans_torch) vs zss's per-image numpy, on one batch of
B x 40 x 40 x 384 patch features (the `dino` / `dino-online` shape: ViT-S/16 at 640), k = 16,
both metrics. Prints seconds per batch (best of --repeat, wall and process CPU time), the ratios,
and checks that every image gets the same partition.

numpy runs as zss runs it (OpenBLAS with its default threads) and with one BLAS thread
(threadpoolctl): on a shared or small machine the default is much slower, so both are shown.
torch runs with kmeans_torch's default (one intra-op thread on a CPU) and, for reference, with
torch's own thread setting.

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


def timed(fn, repeat: int):
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return out, best_wall, best_cpu


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
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, best of {args.repeat}")
    for spherical in (True, False):
        name = "cosine (feature-kmeans)" if spherical else "euclidean (dino, dino-online)"

        def run_np():
            return [np_kmeans(r, k, s, iters, spherical) for r, s in zip(rows, seeds)]

        ref, np_wall, np_cpu = timed(run_np, args.repeat)
        with threadpool_limits(1):
            _, np1_wall, np1_cpu = timed(run_np, args.repeat)
        x = torch.from_numpy(rows).to(dev)

        def run_torch(threads=1):
            out = kmeans(x, k, seeds, iters, spherical, threads=threads)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            return out

        run_torch()  # warm-up
        got, t_wall, t_cpu = timed(run_torch, args.repeat)
        _, tt_wall, tt_cpu = timed(lambda: run_torch(None), 1)
        got = got.cpu().numpy()
        same = sum(np.array_equal(first_appearance(r), first_appearance(g)) for r, g in zip(ref, got))
        print(f"\n## {name}: same partition {same}/{b}")
        print(f"{'run':44s} {'wall s':>8s} {'cpu s':>8s} {'wall x':>8s}")
        rows_out = [("numpy, zss today (BLAS default threads)", np_wall, np_cpu),
                    ("numpy, 1 BLAS thread", np1_wall, np1_cpu),
                    (f"torch batched, 1 thread ({dev.type})", t_wall, t_cpu),
                    (f"torch batched, torch's {torch.get_num_threads()} threads", tt_wall, tt_cpu)]
        for label, w, c in rows_out:
            print(f"{label:44s} {w:8.3f} {c:8.3f} {np_wall / w:8.1f}")
        print(f"ratio torch(1 thread) vs numpy default: {np_wall / t_wall:.1f}x wall; "
              f"vs numpy 1 thread: {np1_wall / t_wall:.1f}x wall, {np1_cpu / t_cpu:.1f}x cpu")


if __name__ == "__main__":
    main()

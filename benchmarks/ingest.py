"""Ingest throughput against the bare model forward, and 2-worker scaling, measured in ONE run.

    python benchmarks/ingest.py [--n-images 96] [--img-size 224] [--model vit_small_patch14_dinov2]

1. bare forward: the backbone alone on the already-decoded images, with torch threads = all CPUs
   and with 1 thread; the faster of the two is the baseline;
2. ingest, 2 workers x 1 torch thread: the whole Ray job (read, decode, features, concepts, shard
   writing) on the same images and model, steady state = images after the first finished chunk
   divided by the time from that chunk to the last (Ray start-up, actor start-up and model loading
   are reported apart);
3. ingest, 1 worker x 1 torch thread, same measurement.
Prints ingest/bare (goal >= 0.85 at ViT-S/14 224 px on 2 CPUs) and 2-worker/1-worker (goal >= 1.7).
Uses a random-init model saved to a local file (offline) and the synthetic world; masks: none.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def bare_forward(model_name: str, ckpt: Path, images: np.ndarray, batch_size: int, threads: int) -> float:
    import torch

    from zss.models.backbone import load_backbone

    torch.set_num_threads(threads)
    model = load_backbone(model_name, ckpt, images.shape[1])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    with torch.inference_mode():
        model(x[:batch_size])  # warm-up
        t0 = time.perf_counter()
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
        return len(x) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=96)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--model", default="vit_small_patch14_dinov2")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args(argv)

    import ray

    from zss.models.random_init import save_random_timm
    from zss.ingest.config import build_config
    from zss.ingest.runner import ingest, steady_rate
    from zss.ingest.sources import open_source
    from zss.ingest.stages.decode import DecodeConfig
    from zss.ingest.workers import read_decode_chunk
    from zss.synth.world import make_world

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_world(root / "world", n_train=args.n_images, n_val=1, size=args.img_size, seed=0)
        ckpt = save_random_timm(args.model, root / "model.safetensors", img_size=args.img_size, seed=0)
        source = open_source(root / "world")
        decoded = read_decode_chunk(source.refs(), DecodeConfig(img_size=args.img_size, store_jpg=False))
        images = decoded["batch"]["image"]

        bare_all = bare_forward(args.model, ckpt, images, args.batch_size, threads=args.cpus)
        bare_one = bare_forward(args.model, ckpt, images, args.batch_size, threads=1)
        bare = max(bare_all, bare_one)  # the better of the two is the baseline (a busy machine
        # can make multi-threaded torch far slower than one thread)
        print(f"bare forward ({args.model}, {args.img_size} px, batch {args.batch_size}): "
              f"{bare_all:.2f} images/s with {args.cpus} torch threads, {bare_one:.2f} with 1", flush=True)

        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
        print(f"Ray start-up: {time.perf_counter() - t0:.1f} s (not in any rate below)", flush=True)
        rates = {}
        try:
            for workers in (2, 1):
                cfg = build_config(None, [f"batch_size={args.batch_size}", "threads_per_worker=1",
                                          f"features.batch_size={args.batch_size}"],
                                   features=f"{args.model}:{ckpt}", img_size=args.img_size, masks="none",
                                   concepts=str(root / "world" / "classes.txt"),
                                   shard_size=max(args.batch_size, args.n_images // 4), workers=workers,
                                   mode="overwrite")
                report = ingest(cfg, source, root / f"shards{workers}", progress=False)
                rates[workers] = steady_rate(report["arrivals"])
                print(f"ingest, {workers} worker(s) x 1 torch thread: {rates[workers]:.2f} images/s steady "
                      f"(whole run {report['processed'] / report['run_seconds']:.2f} images/s incl. "
                      f"{report['first_result_seconds']:.1f} s actor start-up to the first chunk; "
                      f"model check in driver {report['load_seconds']:.1f} s)", flush=True)
        finally:
            ray.shutdown()
    ratio, speedup = rates[2] / bare, rates[2] / rates[1]
    ideal = args.cpus * bare_one  # one single-thread forward per CPU, perfectly parallel: an upper bound
    print(f"ingest / bare forward: {ratio:.2f}  (goal >= 0.85); against the ideal {args.cpus} x "
          f"one-thread forward ({ideal:.2f} images/s): {rates[2] / ideal:.2f}")
    print(f"2 workers / 1 worker: {speedup:.2f}x  (goal >= 1.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

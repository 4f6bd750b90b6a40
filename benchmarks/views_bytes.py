"""What augmented views cost on disk: bytes per sample of `zss ingest --views V`, measured in ONE run.

    python benchmarks/views_bytes.py [--n-images 16] [--img-size 112] [--model vit_small_patch14_dinov2]
                                     [--views 1 2 4] [--dtype float16] [--no-images]

Ingests the synthetic world once per V (random-init model saved to a local file, offline; masks
none; JPEGs stored) and prints, per V, the shard bytes (tar + parquet) per ok sample, the bytes each
extra view adds, and the ratio to V = 1. Byte counts do not depend on the weights (features are
stored uncompressed), so a random-init model gives the real figures for its architecture and size.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--img-size", type=int, default=112)
    ap.add_argument("--model", default="vit_small_patch14_dinov2")
    ap.add_argument("--views", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--dtype", default="float16", choices=("float16", "int8"))
    ap.add_argument("--no-images", action="store_true", help="do not store JPEGs (as simzss-official)")
    args = ap.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    from zss.formats import shards as sh
    from zss.ingest.runner import run_ingest
    from zss.models.random_init import save_random_timm
    from zss.synth.world import make_world

    with tempfile.TemporaryDirectory(prefix="zss-views-bytes-") as tmp:
        root = Path(tmp)
        make_world(root / "world", n_train=args.n_images, n_val=1, size=args.img_size, seed=0)
        ckpt = save_random_timm(args.model, root / "model.safetensors", img_size=args.img_size, seed=0)
        per_sample: dict[int, float] = {}
        for v in args.views:
            out = root / f"v{v}"
            run_ingest(source=str(root / "world"), out=out, features=f"{args.model}:{ckpt}",
                       img_size=args.img_size, masks="none", concepts=str(root / "world" / "classes.txt"),
                       shard_size=args.n_images, workers=1, views=v,
                       store_images=False if args.no_images else None,
                       overrides=[f"features.dtype={args.dtype}", "batch_size=8"])
            manifest = sh.read_manifest(out)
            n_ok = sum(e["n_ok"] for e in manifest["shards"])
            size = sum((out / e[k]).stat().st_size for e in manifest["shards"] for k in ("tar", "parquet"))
            per_sample[v] = size / n_ok
        base = per_sample.get(1, per_sample[min(per_sample)])
        first = min(per_sample)
        print(f"{args.model} at {args.img_size} px, {args.dtype} features, {args.n_images} synthetic images "
              f"({'no JPEGs' if args.no_images else 'JPEGs stored'}, no masks):")
        for v, b in per_sample.items():
            extra = (b - per_sample[first]) / (v - first) if v != first else 0.0
            print(f"  V={v}: {b / 1024:8.1f} KiB per sample ({b / base:.2f}x V=1)"
                  + (f", {extra / 1024:.1f} KiB per extra view" if v != first else ""))


if __name__ == "__main__":
    main()

"""One headline table for the machine it runs on: ingest, training and segmentation throughput.

    python benchmarks/headline.py [--quick|--full] [--sections ...] [--out benchmarks/results]   (`make bench`)

Rows (random weights, synthetic inputs, offline; every figure measured in this run):
- ingest images/s per stage, the real stage callables on batches of decoded images: features
  (DINOv2 ViT-S/14 and ViT-B/14 at 224 and 448 px), `sam` masks (batched generator and
  segment-anything's reference generator, same SAM, same images), `dino` masks (DINO ViT-S/16 +
  batched k-means), `feature-kmeans` masks (k-means of the ViT-S/14 224 px grids), concepts (spaCy
  parsing + matching of captions);
- train steps/s and samples/s: SimZSS (cached features), PixelCLIP cached and full, joint — the
  real recipes' optimizer steps from `benchmarks/train_step.py`'s sections;
- segment ms/image: `zss segment`'s per-image path (random OpenCLIP ViT-S/16).

`--quick` (the default without CUDA) shrinks counts and sizes: few images per row, SAM in the `test_tiny` shape
(segment-anything's builder with a 2-block 32-wide encoder, 1024 px input) at 8 points per side
instead of `vit_b` at 32, DINO masks at 224 px instead of 640, small train batches. The header says
what ran. Results go to `benchmarks/results/<host>.json` so two machines can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
CAPTIONS = ["a dog runs on the grass next to a red ball", "two people sit at a table near a window",
            "a car parked on the road under a tree", "a cat sleeping on a chair in the sun",
            "boats on the water below a cloudy sky", "a child with a kite on the sand"]


def _best(fn: Callable[[], Any], reps: int) -> float:
    """Best wall time of `reps` calls after one warm-up (other load on a shared machine only adds)."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def _batch(images: np.ndarray, **cols: Any) -> dict[str, np.ndarray]:
    n = len(images)
    out = {"index": np.arange(n), "status": np.array(["ok"] * n, dtype=object),
           "error": np.array([""] * n, dtype=object),
           "size": np.array([images.shape[1:3]] * n, dtype=np.int32), "image": images}
    out.update(cols)
    return out


def _images(n: int, side: int, seed: int = 0) -> np.ndarray:
    """Blocky RGB images (flat rectangles + noise), so masks and clusters have something to find."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, side, side, 3), np.uint8)
    for i in range(n):
        im = np.full((side, side, 3), rng.integers(0, 255, 3), np.float32)
        for _ in range(5):
            y, x = rng.integers(0, side * 3 // 4, 2)
            im[y:y + side // 3, x:x + side // 3] = rng.integers(0, 255, 3)
        out[i] = np.clip(im + rng.normal(0, 8, im.shape), 0, 255).astype(np.uint8)
    return out


def _row(table: list[dict], group: str, name: str, value: float, unit: str, note: str = "") -> None:
    table.append({"group": group, "name": name, "value": value, "unit": unit, "note": note})
    print(f"  {group:8s} {name:44s} {value:10.3f} {unit:10s} {note}", flush=True)


def features_rows(table: list[dict], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from zss.ingest.stages.features import FeatureConfig, FeatureStage
    from zss.models.random_init import save_random_timm

    n, bs = (4, 4) if args.quick else (64, 32)
    for model, short in (("vit_small_patch14_dinov2", "ViT-S/14"), ("vit_base_patch14_dinov2", "ViT-B/14")):
        for side in (224, 448):
            ckpt = save_random_timm(model, tmp / f"{model}_{side}.safetensors", img_size=side)
            stage = FeatureStage(FeatureConfig(name=model, checkpoint=str(ckpt), img_size=side, batch_size=bs))
            batch = _batch(_images(n, side))
            t = _best(lambda: stage(batch), args.reps)
            _row(table, "ingest", f"features {short} {side} px", n / t, "images/s", f"{n} images, batch {bs}")
    return {"features_images": n, "features_batch": bs}


def sam_rows(table: list[dict], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from zss.ingest.stages.masks import MaskConfig, MaskStage
    from zss.models.random_init import save_random_sam

    kind, pps, n, side = ("test_tiny", 8, 2, 256) if args.quick else ("vit_b", 32, 8, 512)
    ckpt = save_random_sam(kind, tmp / f"sam_{kind}.safetensors")
    batch = _batch(_images(n, side, seed=1))
    counts = {}
    for impl in ("batched", "reference"):
        stage = MaskStage(MaskConfig(mode="sam", sam_checkpoint=f"{kind}:{ckpt}", points_per_side=pps, impl=impl))
        out: dict = {}
        t = _best(lambda: out.update(stage(batch)), max(1, args.reps - 1))
        counts[impl] = list(out["masks"])
        _row(table, "ingest", f"sam masks ({impl})", n / t, "images/s",
             f"{kind} random, {pps}x{pps} points, {n} images {side}px")
    if counts["batched"] != counts["reference"]:
        print("  (note: batched and reference masks differ on these images)")
    return {"sam_kind": kind, "sam_points_per_side": pps, "sam_images": n, "sam_same_masks":
            counts["batched"] == counts["reference"]}


def kmeans_rows(table: list[dict], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from zss.ingest.stages.masks import MaskConfig, MaskStage
    from zss.models.random_init import save_random_timm

    side, n = (224, 4) if args.quick else (640, 48)
    name = "vit_small_patch16_224.dino"
    ckpt = save_random_timm(name, tmp / "dino.safetensors", img_size=side)
    images = _images(n, 224, seed=2)
    stage = MaskStage(MaskConfig(mode="dino", dino_checkpoint=str(ckpt), dino_img_size=side))
    t = _best(lambda: stage(_batch(images)), args.reps)
    grid = side // 16
    _row(table, "ingest", "dino masks (ViT-S/16 + k-means k=16)", n / t, "images/s",
         f"{n} images at {side}px ({grid}x{grid} grid)")
    rng = np.random.default_rng(3)
    patch = (rng.standard_normal((48 if not args.quick else 16, 16, 16, 384))
             + rng.standard_normal(384)).astype(np.float16)
    km = MaskStage(MaskConfig(mode="feature-kmeans", kmeans_k=16))
    fb = _batch(_images(len(patch), 224, seed=4), patch=patch)
    t = _best(lambda: km(fb), args.reps)
    _row(table, "ingest", "feature-kmeans masks (k-means only)", len(patch) / t, "images/s",
         f"{len(patch)} random 16x16x384 grids")
    return {"dino_img_size": side, "dino_images": n}


def concept_rows(table: list[dict], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from zss.ingest.stages.concepts import ConceptConfig, ConceptStage

    n = 64 if args.quick else 512
    stage = ConceptStage(ConceptConfig())
    caps = np.array([json.dumps([CAPTIONS[i % len(CAPTIONS)], CAPTIONS[(i + 1) % len(CAPTIONS)]])
                     for i in range(n)], dtype=object)
    batch = _batch(np.zeros((n, 1, 1, 3), np.uint8), captions=caps)
    t = _best(lambda: stage(batch), args.reps)
    _row(table, "ingest", "concepts (spaCy + bank match)", n / t, "images/s", f"{n} images x 2 captions")
    return {"concept_images": n}


def train_rows(table: list[dict], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import train_step  # the real recipes' steps, as benchmarks/train_step.py measures them

    ns = argparse.Namespace(batch=8 if args.quick else 32, width=256, layers=4, ctx=32,
                            reps=2 if args.quick else 5)
    res = train_step.simzss_section(ns)
    _row(table, "train", "simzss step (cached features)", 1 / res["cached_s"], "steps/s",
         f"{ns.batch / res['cached_s']:.1f} samples/s, batch {ns.batch}")
    res = train_step.joint_section(ns)
    _row(table, "train", "joint step (cached features)", 1 / res["joint_s"], "steps/s",
         f"{ns.batch / res['joint_s']:.1f} samples/s, batch {ns.batch}")
    res = train_step.pixelclip_section(ns)
    for mode in ("cached", "full"):
        s = res[f"pixelclip_{mode}_s"]
        _row(table, "train", f"pixelclip step ({mode})", 1 / s, "steps/s", f"{2 / s:.2f} samples/s, batch 2")
    return {"train_batch": ns.batch, "pixelclip_batch": 2}


def segment_rows(table: list[dict], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from PIL import Image

    from zss.eval.inference import Predictor
    from zss.eval.segment import segment_config, segment_image
    from zss.formats.vocab import Vocabulary
    from zss.models.clip_dense import save_random_openclip
    from zss.recipes import load_segmenter
    from zss.utils.device import default_device

    n = 2 if args.quick else 16
    ckpt = save_random_openclip("ViT-S-16", tmp / "clip.safetensors", seed=0)
    device = default_device()
    model = load_segmenter(f"openclip:ViT-S-16:{ckpt}", device)
    predictor = Predictor(model, Vocabulary.from_string("grass,sky,dog,car,tree,water,road,person,cat,wall"),
                          segment_config([]), device)
    paths = []
    for i, im in enumerate(_images(n + 1, 448, seed=5)):
        paths.append(tmp / f"seg{i}.jpg")
        Image.fromarray(im[:336]).save(paths[-1])
    segment_image(predictor, paths[0], tmp / "seg" / "warmup")
    t = time.perf_counter()
    for p in paths[1:]:
        segment_image(predictor, p, tmp / "seg" / p.stem)
    per = (time.perf_counter() - t) / n
    _row(table, "segment", "segment (OpenCLIP ViT-S/16, 10 classes)", per * 1e3, "ms/image",
         f"{n} images 336x448")
    return {"segment_images": n}


SECTIONS = {"features": features_rows, "sam": sam_rows, "kmeans": kmeans_rows, "concepts": concept_rows,
            "train": train_rows, "segment": segment_rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", default=None,
                    help="CPU sizes (few images, test_tiny SAM, small batches); the default without CUDA")
    ap.add_argument("--full", dest="quick", action="store_false", help="full sizes even on a CPU")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma list of " + ", ".join(SECTIONS))
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per row (default 2 quick, 3)")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for <host>.json")
    args = ap.parse_args()
    if args.quick is None:
        args.quick = not torch.cuda.is_available()
    args.reps = args.reps or (2 if args.quick else 3)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    header = {"host": socket.gethostname(), "device": device,
              "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
              "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
              "dtype": "fp16 autocast (CUDA) / float32 (CPU) forwards; float16 stored features",
              "quick": args.quick, "reps": args.reps, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    print("# zss headline benchmark — " + ", ".join(f"{k} {v}" for k, v in header.items()), flush=True)
    table: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="zss_headline_") as tmp:
        for name in args.sections.split(","):
            t = time.perf_counter()
            header.update(SECTIONS[name.strip()](table, Path(tmp), args))
            header[f"section_{name.strip()}_s"] = round(time.perf_counter() - t, 1)
    print("\n" + header_line(header))
    print(f"{'group':8s} {'what':44s} {'value':>10s} {'unit':10s} notes")
    for r in table:
        print(f"{r['group']:8s} {r['name']:44s} {r['value']:10.3f} {r['unit']:10s} {r['note']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{header['host']}.json"
    path.write_text(json.dumps({"header": header, "rows": table}, indent=1, sort_keys=True) + "\n")
    print(f"\nwrote {path}")


def header_line(h: dict[str, Any]) -> str:
    return (f"# {h['host']}: device {h['device']} ({h['device_name']}), {h['cpus']} CPUs, torch {h['torch']} "
            f"threads {h['torch_threads']}, {'quick (CPU sizes)' if h['quick'] else 'full sizes'}; "
            f"feature batch {h.get('features_batch')}, train batch {h.get('train_batch')}, "
            f"pixelclip batch {h.get('pixelclip_batch')}; best of {h['reps']} after a warm-up")


if __name__ == "__main__":
    main()

"""SAM automatic masks benchmark: BatchedMaskGenerator vs segment-anything's SamAutomaticMaskGenerator
on the same images with the same SAM (random weights), seconds per image with a per-stage split
(encoder, decoder = prompt encoder + mask decoder, post = everything else: resizing, upsampling,
filters, NMS, RLE), and a check that both give the same masks.

Two settings: `survive` (thresholds that let a random SAM's masks through, so that both generators
post-process every mask: the conservative case for the batched one) and `default`
(segment-anything's defaults: a random SAM's masks fail the IoU filter, which the batched generator
applies before upsampling).

    python benchmarks/sam_masks.py [--kind test_tiny|vit_b] [--images 3] [--size 224]
        [--points 8] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict

import numpy as np
import torch
from pycocotools import mask as mask_utils
from segment_anything import SamAutomaticMaskGenerator

from zss.models import sam_amg as sam_batched
from zss.models.sam_amg import BatchedMaskGenerator
from zss.models.random_init import save_random_sam
from zss.models.sam import load_sam

SETTINGS = {
    "survive": dict(pred_iou_thresh=0.05, stability_score_thresh=0.05, stability_score_offset=0.05,
                    box_nms_thresh=1.0),
    "default": dict(),
}


def images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = np.full((size, size, 3), rng.integers(0, 255, 3), np.float64)
        for _ in range(6):
            y0, x0 = rng.integers(0, size - 16, 2)
            h, w = rng.integers(16, size // 2, 2)
            im[y0:y0 + h, x0:x0 + w] = rng.integers(0, 255, 3)
        out.append(np.clip(im + rng.normal(0, 6, im.shape), 0, 255).astype(np.uint8))
    return out


class StageClock:
    """Wall and CPU seconds spent inside the wrapped callables, per stage."""

    def __init__(self, device: torch.device):
        self.device = device
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            w, c = time.perf_counter(), time.process_time()
            out = fn(*args, **kwargs)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.wall[stage] += time.perf_counter() - w
            self.cpu[stage] += time.process_time() - c
            return out
        return timed


def run(label: str, sam, fn, n_images: int) -> tuple[list, dict]:
    """Runs fn() with the SAM's encoder / prompt encoder / mask decoder (and the batched decoder)
    timed; returns its output and seconds per image per stage."""
    clock = StageClock(sam.device)
    saved = (sam.image_encoder.forward, sam.prompt_encoder.forward, sam.mask_decoder.forward,
             sam_batched.decode_masks)
    sam.image_encoder.forward = clock.wrap("encoder", saved[0])
    sam.prompt_encoder.forward = clock.wrap("decoder", saved[1])
    sam.mask_decoder.forward = clock.wrap("decoder", saved[2])
    sam_batched.decode_masks = clock.wrap("decoder", saved[3])
    try:
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        if sam.device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - w, time.process_time() - c
    finally:
        (sam.image_encoder.forward, sam.prompt_encoder.forward, sam.mask_decoder.forward,
         sam_batched.decode_masks) = saved
    split = {"total": (wall / n_images, cpu / n_images)}
    for stage in ("encoder", "decoder"):
        split[stage] = (clock.wall[stage] / n_images, clock.cpu[stage] / n_images)
    split["post"] = tuple(t - split["encoder"][i] - split["decoder"][i] for i, t in enumerate(split["total"]))
    return out, split


def same_masks(ref: list[list[dict]], got: list[list[dict]]) -> tuple[bool, int, float, float]:
    ok, worst_iou, worst_score = True, 1.0, 0.0
    n = 0
    for r, g in zip(ref, got):
        ok &= len(r) == len(g)
        for a, b in zip(r, g):
            ma, mb = mask_utils.decode(a["segmentation"]).astype(bool), mask_utils.decode(b["segmentation"]).astype(bool)
            worst_iou = min(worst_iou, (ma & mb).sum() / max((ma | mb).sum(), 1))
            worst_score = max(worst_score, abs(a["predicted_iou"] - b["predicted_iou"]),
                              abs(a["stability_score"] - b["stability_score"]))
            n += 1
    return ok and worst_iou >= 0.99 and worst_score <= 1e-4, n, worst_iou, worst_score


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="test_tiny")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--points", type=int, default=8, help="points_per_side")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--settings", default="survive,default")
    ap.add_argument("--small-batch-reference", action="store_true",
                    help="also time the reference with points_per_batch = the batched decoder's piece size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = save_random_sam(args.kind, os.path.join(tempfile.mkdtemp(), "sam.safetensors"), seed=0)
    sam = load_sam(args.kind, path, args.device)
    ims = images(args.images, args.size)
    print(f"# SAM automatic masks: {args.kind} (random weights), {args.images} images {args.size}x{args.size}, "
          f"points_per_side {args.points} ({args.points ** 2} prompts/image), device {args.device}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    for name in args.settings.split(","):
        kw = dict(points_per_side=args.points, output_mode="coco_rle", **SETTINGS[name])
        ref_gen = SamAutomaticMaskGenerator(sam, **kw)
        bat_gen = BatchedMaskGenerator(sam, **kw)
        ref, ref_t = run("reference", sam, lambda: [ref_gen.generate(im) for im in ims], len(ims))
        got, bat_t = run("batched", sam, lambda: bat_gen.generate_batch(ims), len(ims))
        ok, n, worst_iou, worst_score = same_masks(ref, got)
        print(f"\n## settings {name}: {n} masks, same masks: {ok} (worst IoU {worst_iou:.4f}, "
              f"worst score diff {worst_score:.1e})")
        rows = [("reference (as zss runs it)", ref_t), ("batched", bat_t)]
        if args.small_batch_reference:  # how much of the decoder gain is the CPU-friendly piece size
            small = SamAutomaticMaskGenerator(sam, **{**kw, "points_per_batch": bat_gen.decoder_chunk})
            rows.insert(1, (f"reference, points_per_batch={bat_gen.decoder_chunk}",
                            run("reference small", sam, lambda: [small.generate(im) for im in ims], len(ims))[1]))
        print(f"{'s/image: wall | cpu':30s}" + "".join(f"{st:>18s}" for st in ("encoder", "decoder", "post", "total"))
              + f"{'x wall':>8s}{'x cpu':>7s}")
        for label, t in rows:
            print(f"{label:30s}" + "".join(f"{t[st][0]:9.2f} |{t[st][1]:7.2f}" for st in ("encoder", "decoder", "post", "total"))
                  + f"{ref_t['total'][0] / t['total'][0]:8.2f}{ref_t['total'][1] / t['total'][1]:7.2f}")


if __name__ == "__main__":
    main()

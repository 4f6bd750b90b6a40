"""`zss demo`: the whole product on one CPU, offline, in minutes.

synthetic world → random-init DINOv2-architecture ViT-S/14 saved to and loaded from a local file →
ingest of the world's SA-1B layout (Ray, 2 workers; its class-agnostic masks, its caption sidecars
parsed to concepts by spaCy) → train SimZSS (captions) and joint (captions + the same shards' masks,
docs/joint.md) → eval on the synthetic benchmark (both trained towers vs the untrained one vs
random-CLIP MaskCLIP baseline, and joint with mask-consistent inference) → segment one image.

Nothing here is special-cased for the demo: every step is the library call behind a CLI command,
with the demo-scale configs from zss/manifests/train/simzss-demo.yaml and joint-demo.yaml.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from zss.errors import ZssError
from zss.paths import MANIFESTS

BACKBONE = "vit_small_patch14_dinov2"
CLIP_ARCH = "ViT-S-16"


def _miou(results_dir: Path) -> float:
    data = json.loads((results_dir / "results.json").read_text())
    return float(data["benchmarks"]["synth"]["mIoU"])


DEMO_ENTRIES = {"world", "checkpoints", "shards", "run", "run_joint", "run_untrained", "eval", "segment",
                "demo_summary.json"}
REBUILT = ("run", "run_joint", "run_untrained", "eval", "segment")  # removed first: the others are overwritten in place


def prepare_out(out: Path) -> None:
    """Make `out` ready for a demo run: a new or empty folder, or one holding only what an earlier
    demo run wrote (finished or not), whose training run and results are removed first so running
    `make demo` again rebuilds them instead of stopping at the old run's checkpoints. Anything else
    in `out` is refused untouched."""
    import shutil

    if out.exists() and not out.is_dir():
        raise ZssError(f"--out {out} is a file, not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in DEMO_ENTRIES)
        if foreign:
            raise ZssError(f"--out {out} holds files the demo did not write ({', '.join(foreign[:3])}"
                           f"{', ...' if len(foreign) > 3 else ''}); give an empty or new folder")
        for name in REBUILT:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def check_demo_size(n_images: int, config: Path) -> None:
    """The demo trains on every ingested image with one data reader: it needs at least one full
    batch of the demo config's `batch_size` (checked before any work starts)."""
    from zss.commands.train import resolve_config

    _, cfg, _ = resolve_config("simzss", config)
    need = cfg.batch_size
    if n_images < need:
        raise ZssError(f"--n-images {n_images} is too few: the demo trains with batches of {need} "
                       f"images ({config.name}), give --n-images {need} or more")


def run_demo(out: Path, steps: int = 300, n_images: int = 160, img_size: int = 224) -> str:
    """Run every stage into `out`; return a summary with where the overlay and results are."""
    from zss.eval.evaluate import run_eval
    from zss.eval.segment import run_segment
    from zss.models.clip_dense import save_random_openclip
    from zss.models.random_init import save_random_timm
    from zss.ingest.runner import run_ingest
    from zss.synth.world import make_world
    from zss.commands.train import export_untrained, run_training

    config = MANIFESTS / "train" / "simzss-demo.yaml"
    check_demo_size(n_images, config)
    out = Path(out)
    prepare_out(out)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round(now - t0, 1)
        t0 = now
        print(f"[demo] {name} done in {timings[name]:.1f}s", flush=True)

    world = out / "world"
    make_world(world, n_train=n_images, n_val=24, size=img_size, seed=0)
    lap("synth")

    ckpt = save_random_timm(BACKBONE, out / "checkpoints" / "vits14_random.safetensors",
                            img_size=img_size, seed=0)
    clip_ckpt = save_random_openclip(CLIP_ARCH, out / "checkpoints" / "clip_random.safetensors", seed=0)
    lap("random checkpoints")

    shards = out / "shards"
    # SA-1B layout: the same JPEGs and captions as the COCO layout (SimZSS learns the same tower from
    # either, up to float rounding) plus per-image class-agnostic masks, the stand-in for SAM's that
    # joint learns from
    print(run_ingest(source=f"sa1b:{world / 'train' / 'sa1b'}", out=shards, preset=None,
                     features=f"{BACKBONE}:{ckpt}", img_size=img_size, masks="sa1b", sam_checkpoint=None,
                     concepts=str(world / "classes.txt"), shard_size=64, workers=2, address=None,
                     mode="overwrite", limit=None, store_images=True, overrides=[]), flush=True)
    lap("ingest")

    print(export_untrained("simzss", shards, out / "run_untrained" / "model", config=config), flush=True)
    print(run_training("simzss", shards, out / "run", config=config, steps=steps), flush=True)
    lap("train")
    print(run_training("joint", shards, out / "run_joint", config=MANIFESTS / "train" / "joint-demo.yaml",
                       steps=steps), flush=True)
    lap("train joint")

    scores = {}
    for name, model in (("trained", out / "run" / "model"), ("joint", out / "run_joint" / "model"),
                        ("untrained", out / "run_untrained" / "model"),
                        ("clip_baseline", f"openclip:{CLIP_ARCH}:{clip_ckpt}")):
        res = out / "eval" / name
        print(run_eval(model=str(model), benchmark="synth", data_root=world, out=res), flush=True)
        scores[name] = _miou(res)
    res = out / "eval" / "joint_refined"  # mask-consistent inference: superpixel means (docs/joint.md)
    print(run_eval(model=str(out / "run_joint" / "model"), benchmark="synth", data_root=world, out=res,
                   overrides=["refine=masks"]), flush=True)
    scores["joint_refined"] = _miou(res)
    lap("eval")

    image = sorted((world / "val" / "images").glob("*.jpg"))[0]
    seg_out = out / "segment"
    print(run_segment(model=str(out / "run" / "model"), inputs=image, vocab_file=world / "classes.txt",
                      out=seg_out), flush=True)
    lap("segment")

    summary = {"mIoU": scores, "seconds": timings, "overlay": str(next(seg_out.glob("*_overlay.png"))),
               "results": str(out / "eval" / "trained" / "results.md")}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    return (f"demo finished in {sum(timings.values()):.0f}s\n"
            f"  synthetic val mIoU (%): trained {scores['trained']:.1f} | joint (captions + masks) "
            f"{scores['joint']:.1f} (with refine=masks {scores['joint_refined']:.1f}) | untrained "
            f"{scores['untrained']:.1f}"
            f" | random-CLIP MaskCLIP baseline {scores['clip_baseline']:.1f}\n"
            f"  results: {summary['results']}\n  overlay: {summary['overlay']}")

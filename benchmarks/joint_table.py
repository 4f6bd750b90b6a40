"""docs/joint.md's table: SimZSS vs joint (and each joint term removed in turn) on the synthetic world,
same shards, steps and seeds, each scored plain, with mask-consistent inference (`refine=masks`: SLIC
superpixels, the default, and feature k-means) and with PAMR, plus the untrained tower and the
random-CLIP MaskCLIP baseline.

    .venv/bin/python benchmarks/joint_table.py OUT [--steps 300] [--batch-size 64] [--seeds 0 1 2]
        [--masks sa1b|dino-kmeans] [--stage all|train|eval|table] [--variants simzss joint ...]

OUT/world + OUT/shards are the demo's (zss synth 160 train / 24 val at 224 px, its SA-1B layout with
caption sidecars, random-init ViT-S/14 saved to a local file, the world's class list as concept
bank; masks: the SA-1B files' class-agnostic masks, or `--masks dino-kmeans` k-means of the same
random features); made once and reused. Each (variant, seed) trains into OUT/runs/VARIANT-sSEED
(skipped when its model exists) and is evaluated into OUT/eval/VARIANT-sSEED[-SUFFIX]; `table` prints
the markdown table (mean ± std over seeds) and writes OUT/table.md and OUT/table.json. Each stage can
be re-run: finished work is kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[1] / "zss" / "manifests" / "train"
BACKBONE, CLIP_ARCH = "vit_small_patch14_dinov2", "ViT-S-16"
# name -> (recipe, config, extra --set overrides): joint, and joint with each term removed in turn
VARIANTS: dict[str, tuple[str, str, list[str]]] = {
    "simzss": ("simzss", "simzss-demo.yaml", []),
    "joint": ("joint", "joint-demo.yaml", []),
    "joint-no-local": ("joint", "joint-demo.yaml", ["recipe.local_weight=0"]),
    "joint-no-region": ("joint", "joint-demo.yaml", ["recipe.region_weight=0"]),
    "joint-no-mil": ("joint", "joint-demo.yaml", ["recipe.mil_weight=0"]),
    "joint-no-consistency": ("joint", "joint-demo.yaml", ["recipe.consistency_weight=0"]),
    "joint+cluster": ("joint", "joint-demo.yaml", ["recipe.cluster_weight=0.5"]),
}
# eval-directory suffix -> (column title, --set overrides)
SCORINGS: dict[str, tuple[str, list[str]]] = {
    "": ("mIoU", []),
    "-refine": ("refine=masks (SLIC)", ["refine=masks"]),
    "-km8": ("refine=masks (feature k-means, k 8)", ["refine=masks", "masks=feature-kmeans"]),
    "-pamr": ("PAMR (10 steps)", ["pamr_steps=10", "pamr_at=label"]),
    "-pamrslic": ("PAMR + refine=masks (SLIC)", ["pamr_steps=10", "pamr_at=label", "refine=masks"]),
}


def prepare(out: Path, masks: str = "sa1b") -> tuple[Path, Path, str]:
    """(world, shards, MaskCLIP spec): the demo's data, made once."""
    from zss.ingest.runner import run_ingest
    from zss.models.clip_dense import save_random_openclip
    from zss.models.random_init import save_random_timm
    from zss.synth.world import make_world

    world, shards, ck = out / "world", out / "shards", out / "checkpoints"
    clip = ck / "clip_random.safetensors"
    if not (shards / "manifest.json").is_file():
        make_world(world, n_train=160, n_val=24, size=224, seed=0)
        ckpt = save_random_timm(BACKBONE, ck / "vits14_random.safetensors", img_size=224, seed=0)
        source = f"sa1b:{world / 'train' / 'sa1b'}" if masks == "sa1b" else f"coco:{world}"
        run_ingest(source=source, out=shards, preset=None, features=f"{BACKBONE}:{ckpt}", img_size=224,
                   masks=masks, sam_checkpoint=None, concepts=str(world / "classes.txt"), shard_size=64,
                   workers=2, address=None, mode="overwrite", limit=None, store_images=True, overrides=[])
    if not clip.is_file():
        save_random_openclip(CLIP_ARCH, clip, seed=0)
    return world, shards, f"openclip:{CLIP_ARCH}:{clip}"


def train_all(out: Path, shards: Path, variants: list[str], seeds: list[int], steps: int, batch: int) -> None:
    from zss.commands.train import export_untrained, run_training

    untrained = out / "runs" / "untrained" / "model"
    if not (untrained / "config.json").is_file():
        export_untrained("simzss", shards, untrained, config=TRAIN / "simzss-demo.yaml")
    for seed in seeds:  # every variant at one seed first: early numbers for all rows
        for name in variants:
            recipe, config, extra = VARIANTS[name]
            run = out / "runs" / f"{name}-s{seed}"
            if (run / "model" / "config.json").is_file():
                continue
            t0 = time.perf_counter()
            run_training(recipe, shards, run, config=TRAIN / config, steps=steps,
                         overrides=[f"seed={seed}", f"batch_size={batch}", "log_every=25", "tensorboard=false",
                                    *extra])
            (run / "seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
            print(f"[joint_table] trained {run.name} in {time.perf_counter() - t0:.0f}s", flush=True)


def _miou(path: Path) -> float:
    return float(json.loads((path / "results.json").read_text())["benchmarks"]["synth"]["mIoU"])


def eval_all(out: Path, world: Path, clip: str) -> None:
    from zss.eval.evaluate import run_eval

    models = {p.name: p / "model" for p in sorted((out / "runs").iterdir()) if (p / "model" / "config.json").is_file()}
    models["maskclip-random"] = clip
    for name, model in models.items():
        for suffix, (_, overrides) in SCORINGS.items():
            dest = out / "eval" / f"{name}{suffix}"
            if not (dest / "results.json").is_file():
                run_eval(model=str(model), benchmark="synth", data_root=world, out=dest, overrides=overrides)


def table(out: Path) -> str:
    scores: dict[str, dict[str, list[float]]] = {}
    suffixes = sorted((k for k in SCORINGS if k), key=len, reverse=True)
    for res in sorted((out / "eval").iterdir()):
        if not (res / "results.json").is_file():
            continue
        suffix = next((k for k in suffixes if res.name.endswith(k)), "")
        name = res.name[:len(res.name) - len(suffix)]
        variant = name.rsplit("-s", 1)[0] if "-s" in name and name.rsplit("-s", 1)[1].isdigit() else name
        scores.setdefault(variant, {}).setdefault(suffix, []).append(_miou(res))

    def cell(v: list[float]) -> str:
        if not v:
            return "—"
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{statistics.mean(v):.1f} ± {sd:.1f} (n={len(v)})"

    head = ["model"] + [title for title, _ in SCORINGS.values()] + ["Δ SLIC refine"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, s in scores.items():
        p, r = s.get("", []), s.get("-refine", [])
        delta = f"{statistics.mean(r) - statistics.mean(p):+.1f}" if p and r else "—"
        lines.append("| " + " | ".join([variant] + [cell(s.get(k, [])) for k in SCORINGS] + [delta]) + " |")
    text = "\n".join(lines)
    (out / "table.md").write_text(text + "\n")
    (out / "table.json").write_text(json.dumps(scores, indent=2))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--masks", default="sa1b", choices=("sa1b", "dino-kmeans"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--stage", default="all", choices=("all", "train", "eval", "table"))
    args = ap.parse_args()
    world, shards, clip = prepare(args.out, args.masks)
    if args.stage in ("all", "train"):
        train_all(args.out, shards, args.variants, args.seeds, args.steps, args.batch_size)
    if args.stage in ("all", "eval"):
        eval_all(args.out, world, clip)
    if args.stage in ("all", "table"):
        print(table(args.out))


if __name__ == "__main__":
    main()

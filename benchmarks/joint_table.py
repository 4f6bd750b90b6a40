"""docs/joint.md's table: SimZSS vs joint (and each joint term removed in turn) on the synthetic world,
same shards, steps and seeds, each scored with and without mask-consistent inference
(`--set refine=masks`), plus the untrained tower and the random-CLIP MaskCLIP baseline.

    .venv/bin/python benchmarks/joint_table.py OUT [--steps 150] [--batch-size 32] [--seeds 0 1 2]
        [--stage all|train|eval|table] [--variants simzss joint ...]

OUT/world + OUT/shards are the demo's (zss synth 160 train / 24 val at 224 px, random-init ViT-S/14
saved to a local file, dino-kmeans masks, the world's class list as concept bank); made once and
reused. Each (variant, seed) trains into OUT/runs/VARIANT-sSEED (skipped when its model exists) and is
evaluated into OUT/eval/VARIANT-sSEED[-refine]; `table` prints the markdown table (mean ± std over
seeds) and writes OUT/table.md and OUT/table.json. Each stage can be re-run: finished work is kept.
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
REFINE = ["refine=masks"]


def prepare(out: Path) -> tuple[Path, Path, str]:
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
        run_ingest(source=f"coco:{world}", out=shards, preset=None, features=f"{BACKBONE}:{ckpt}", img_size=224,
                   masks="dino-kmeans", sam_checkpoint=None, concepts=str(world / "classes.txt"), shard_size=64,
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
        for suffix, overrides in (("", []), ("-refine", REFINE)):
            dest = out / "eval" / f"{name}{suffix}"
            if not (dest / "results.json").is_file():
                run_eval(model=str(model), benchmark="synth", data_root=world, out=dest, overrides=overrides)


def table(out: Path) -> str:
    scores: dict[str, dict[str, list[float]]] = {}
    for res in sorted((out / "eval").iterdir()):
        if not (res / "results.json").is_file():
            continue
        name, refine = (res.name[:-7], "refine") if res.name.endswith("-refine") else (res.name, "plain")
        variant = name.rsplit("-s", 1)[0] if "-s" in name and name.rsplit("-s", 1)[1].isdigit() else name
        scores.setdefault(variant, {}).setdefault(refine, []).append(_miou(res))

    def cell(v: list[float]) -> str:
        if not v:
            return "—"
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{statistics.mean(v):.1f} ± {sd:.1f} (n={len(v)})"

    lines = ["| model | mIoU | mIoU, refine=masks | Δ refine |", "|---|---|---|---|"]
    for variant, s in scores.items():
        p, r = s.get("plain", []), s.get("refine", [])
        delta = f"{statistics.mean(r) - statistics.mean(p):+.1f}" if p and r else "—"
        lines.append(f"| {variant} | {cell(p)} | {cell(r)} | {delta} |")
    text = "\n".join(lines)
    (out / "table.md").write_text(text + "\n")
    (out / "table.json").write_text(json.dumps(scores, indent=2))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--stage", default="all", choices=("all", "train", "eval", "table"))
    args = ap.parse_args()
    world, shards, clip = prepare(args.out)
    if args.stage in ("all", "train"):
        train_all(args.out, shards, args.variants, args.seeds, args.steps, args.batch_size)
    if args.stage in ("all", "eval"):
        eval_all(args.out, world, clip)
    if args.stage in ("all", "table"):
        print(table(args.out))


if __name__ == "__main__":
    main()

"""Full mode as released on the synthetic world: images stored at 704 px, random 640² crops resized
to 320² for a random tiny CLIP, the release's decoder, mask rules, strong view and Sinkhorn start."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from zss.commands.train import run_training
from zss.formats import shards as sh
from zss.formats.rle import encode_mask
from zss.paths import MANIFESTS
from zss.recipes.pixelclip.targets import decode_rle_masks

STORED = 704


def _big_shards(world: Path, out: Path, n: int = 12) -> Path:
    """Shards whose stored images and masks are at STORED² (the cached grid is a placeholder: full
    mode never reads it)."""
    sa1b = world / "train" / "sa1b"
    samples = []
    for stem in sorted((p.stem for p in sa1b.glob("sa_*.json")), key=lambda s: int(s[3:]))[:n]:
        img = Image.open(sa1b / f"{stem}.jpg").convert("RGB").resize((STORED, STORED), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        full = decode_rle_masks(json.loads((sa1b / f"{stem}.json").read_text())["annotations"])
        masks = [np.asarray(Image.fromarray(m).resize((STORED, STORED), Image.NEAREST)) for m in full]
        samples.append({"source_id": stem, "status": "ok", "error": "", "captions": [],
                        "orig_size": (STORED, STORED), "size": (STORED, STORED),
                        "patch": np.zeros((2, 2, 64), np.float16), "global": np.zeros(64, np.float16),
                        "concepts": [], "masks": [encode_mask(m) for m in masks if m.any()],
                        "jpg": buf.getvalue()})
    sh.write_shard(out, 0, samples)
    sh.write_manifest(out, {"schema_version": sh.SCHEMA_VERSION, "source": {"kind": "sa1b", "path": str(sa1b)},
                            "models": {"features": {"name": "open_clip/zss-tiny-vit"}, "masks": {"mode": "sa1b"}},
                            "feature": {"grid": [2, 2], "dim": 64, "dtype": "float16"},
                            "shards": [sh.shard_entry(out, 0)], "complete": True})
    return out


@pytest.mark.slow
def test_full_mode_as_released_trains_at_320_from_640_crops(world, tiny_clip, tmp_path):
    shards = _big_shards(world, tmp_path / "shards")
    official = yaml.safe_load((MANIFESTS / "train" / "pixelclip-official-vitb16.yaml").read_text())
    recipe = {**official["recipe"], "clip": f"zss-tiny-vit:{tiny_clip}", "k": 4, "momentum": 0.9}
    assert recipe["img_size"] == 320 and recipe["crop_size"] == 640 and recipe["decoder"] == "official"
    cfg = {**{k: v for k, v in official.items() if k != "recipe"}, "steps": 16, "batch_size": 2,
           "lr": 1e-3, "grad_clip": 0.0, "log_every": 1, "ckpt_every": 100, "tensorboard": False,
           "shuffle_buffer": 16, "recipe": recipe}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    run_training("pixelclip", shards, run, config=tmp_path / "cfg.yaml")
    with open(run / "metrics.csv", newline="") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3]), losses  # falls steadily, not by luck of one step
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["default_size"] == 320 and config["decoder"]["variant"] == "official"

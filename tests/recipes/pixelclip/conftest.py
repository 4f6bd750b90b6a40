"""PixelCLIP test fixtures: a random tiny OpenCLIP checkpoint and small shard folders.

Shards are built in-process (no Ray): the same writer, backbone and mask code `zss ingest` uses,
called directly so the tests stay inside their time budget.

Images of the synthetic world's SA-1B layout are resized to a square, encoded by the dense OpenCLIP
backbone (cached features), and get either their SA-1B masks (rescaled) or k-means masks over the
patch grid (the `dino-kmeans` mask source).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zss.models.backbone import load_backbone
from zss.models.clip_dense import save_random_openclip
from zss.formats import shards as sh
from zss.formats.rle import encode_mask
from zss.ingest.stages.masks import kmeans_masks
from zss.recipes.pixelclip.targets import decode_rle_masks


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def build_shards(world: Path, out: Path, arch: str, checkpoint: Path, masks: str = "sa1b",
                 img_size: int = 64, shard_size: int = 16, kmeans_k: int = 4) -> Path:
    sa1b = Path(world) / "train" / "sa1b"
    stems = sorted((p.stem for p in sa1b.glob("sa_*.json")), key=lambda s: int(s[3:]))
    backbone = load_backbone(f"open_clip/{arch}", str(checkpoint), img_size)
    samples = []
    for stem in stems:
        img = Image.open(sa1b / f"{stem}.jpg").convert("RGB")
        orig = (img.height, img.width)
        small = np.array(img.resize((img_size, img_size), Image.BILINEAR))
        with torch.no_grad():
            patch, glob = backbone(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0)
        patch = patch[0].numpy().astype(np.float16)
        if masks == "sa1b":
            record = json.loads((sa1b / f"{stem}.json").read_text())
            full = decode_rle_masks(record["annotations"])
            resized = [np.asarray(Image.fromarray(m).resize((img_size, img_size), Image.NEAREST)) for m in full]
            anns = [encode_mask(m) for m in resized if m.any()]
        else:
            anns = kmeans_masks(patch.astype(np.float32), (img_size, img_size), kmeans_k, 0)
        samples.append({"source_id": stem, "status": "ok", "error": "", "captions": [],
                        "orig_size": orig, "size": (img_size, img_size), "patch": patch,
                        "global": glob[0].numpy().astype(np.float16), "concepts": [],
                        "masks": anns, "jpg": _jpeg(small)})
    out = Path(out)
    entries = []
    for sid, start in enumerate(range(0, len(samples), shard_size)):
        sh.write_shard(out, sid, samples[start:start + shard_size])
        entries.append(sh.shard_entry(out, sid))
    grid = list(samples[0]["patch"].shape[:2])
    classes = [line.split(";") for line in (Path(world) / "classes.txt").read_text().splitlines() if line]
    bank = {"schema": 1, "concepts": [{"id": i, "name": names[0], "synonyms": names[1:], "sources": ["synth"]}
                                      for i, names in enumerate(classes)]}
    (out / "concepts.json").write_text(json.dumps(bank))
    sh.write_manifest(out, {"schema_version": sh.SCHEMA_VERSION, "source": {"kind": "sa1b", "path": str(sa1b)},
                            "models": {"features": backbone.spec, "masks": {"mode": masks}},
                            "feature": {"grid": grid, "dim": int(samples[0]["patch"].shape[-1]),
                                        "dtype": "float16"},
                            "concept_bank": {"file": "concepts.json"}, "shards": entries, "complete": True})
    return out


ARCH = "zss-tiny-vit"


@pytest.fixture(scope="session")
def sa1b_shards(world, tiny_clip, tmp_path_factory) -> Path:
    return build_shards(world, tmp_path_factory.mktemp("shards_sa1b"), ARCH, tiny_clip, masks="sa1b")


@pytest.fixture(scope="session")
def kmeans_shards(world, tiny_clip, tmp_path_factory) -> Path:
    return build_shards(world, tmp_path_factory.mktemp("shards_kmeans"), ARCH, tiny_clip, masks="dino-kmeans")

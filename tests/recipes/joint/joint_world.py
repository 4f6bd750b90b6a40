"""The feature world of tests/conftest.py with masks: each image's two class regions (the column
split) as COCO-RLE masks at the sample size, as `zss ingest --masks ...` would store them. Options
make the bad-input folders (no masks at all, no captions) and images without masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from conftest import CLASSES, DIM, GRID, TEMPLATES, FeatureWorld, _caption, _image, finish_feature_world
from zss.formats.shards import shard_entry, write_shard

SIZE = 56  # pixels; GRID patches of 14


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode()},
            "area": int(mask.sum()), "bbox": [0, 0, SIZE, SIZE], "predicted_iou": 1.0, "stability_score": 1.0}


def region_masks(labels: np.ndarray) -> list[dict]:
    """The label grid's regions as RLE annotations at SIZE x SIZE."""
    full = np.kron(labels, np.ones((SIZE // GRID, SIZE // GRID), dtype=np.int64))
    return [_rle(full == c) for c in np.unique(labels)]


def make_masked_world(root: Path, n_train: int = 48, n_val: int = 16, n_shards: int = 2, seed: int = 0,
                      dim: int = DIM, backbone: dict | None = None, masks: bool = True, captions: bool = True,
                      unmasked_every: int = 0) -> FeatureWorld:
    """Shards under root/shards; every `unmasked_every`-th image (if > 0) has no masks."""
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((len(CLASSES), dim)) * 0.5
    offset = rng.standard_normal(dim) * 2.0
    shards, per, entries = root / "shards", (n_train + n_shards - 1) // n_shards, []
    for sid in range(n_shards):
        samples = []
        for i in range(sid * per, min(n_train, (sid + 1) * per)):
            a, b, labels, patch = _image(rng, protos, offset)
            caps = [_caption(t, *(a, b) if j == 0 else (b, a)) for j, t in enumerate(TEMPLATES)] if captions else []
            anns = region_masks(labels) if masks and not (unmasked_every and i % unmasked_every == 0) else []
            samples.append({"source_id": str(i), "status": "ok", "error": None,
                            "captions": [c for c, _ in caps], "concepts": [c for _, c in caps],
                            "orig_size": (SIZE, SIZE), "size": (SIZE, SIZE), "patch": patch.astype(np.float16),
                            "global": rng.standard_normal(dim).astype(np.float16),
                            "masks": anns if masks else None, "jpg": None})
        write_shard(shards, sid, samples)
        entries.append(shard_entry(shards, sid))
    return finish_feature_world(shards, entries, rng, protos, offset, n_val, dim, img_size=SIZE, dtype="float16",
                                backbone=backbone, masks_mode="sa1b" if masks else "none")

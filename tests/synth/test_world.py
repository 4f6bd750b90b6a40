"""The synthetic world is deterministic and written in the real layouts."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from zss.synth.world import CLASSES, make_world


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    make_world(a, n_train=5, n_val=2, size=64, seed=3)
    make_world(b, n_train=5, n_val=2, size=64, seed=3)
    make_world(c, n_train=5, n_val=2, size=64, seed=4)
    for rel in ("train/captions.json", "train/wds/00000.tar", "val/annotations/000000100001.png"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert (a / "train/captions.json").read_bytes() != (c / "train/captions.json").read_bytes()


def test_layouts_agree_with_ground_truth(world):
    info = json.loads((world / "world.json").read_text())
    assert len(info["classes"]) == len(CLASSES) == len((world / "classes.txt").read_text().split("\n")) - 1
    coco = json.loads((world / "train/captions.json").read_text())
    assert len(coco["images"]) == info["n_train"]
    per_image: dict[int, list[str]] = {}
    for ann in coco["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann["caption"])
    assert all(1 <= len(v) <= 5 for v in per_image.values()) and len(per_image) == info["n_train"]

    first = coco["images"][0]
    label = np.array(Image.open(world / "train/annotations" / first["file_name"].replace(".jpg", ".png")))
    assert label.shape == (first["height"], first["width"])
    sa = json.loads((world / f"train/sa1b/sa_{first['id']}.json").read_text())
    masks = [mask_utils.decode({"size": a["segmentation"]["size"],
                                "counts": a["segmentation"]["counts"].encode()}) for a in sa["annotations"]]
    # SA-1B masks are class-agnostic but each one is pure in the ground truth and they tile the image.
    for m, ann in zip(masks, sa["annotations"]):
        assert m.sum() == ann["area"]
        assert len(np.unique(label[m.astype(bool)])) == 1
    assert np.sum(masks, axis=0).max() == 1

    # Every caption names at least one class that is really in its image.
    names = {n: k for k, c in enumerate(CLASSES) for n in (*c.names, c.plural) if n}
    for img in coco["images"][:8]:
        present = set(np.unique(np.array(Image.open(
            world / "train/annotations" / img["file_name"].replace(".jpg", ".png")))).tolist())
        for cap in per_image[img["id"]]:
            hits = {k for n, k in names.items() if n in cap.lower()}
            assert hits and hits <= present, (cap, present)

    val = sorted((world / "val/annotations").glob("*.png"))
    assert len(val) == info["n_val"]
    vals = np.unique(np.array(Image.open(val[0])))
    assert set(vals.tolist()) <= set(range(len(CLASSES))) | {255}

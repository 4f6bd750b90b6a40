"""COCO-Object: the official `instances_val2017.json` -> 81-class maps (0 = background, 1..80 things).

Official download (cocodataset.org): `val2017.zip` and `annotations_trainval2017.zip` unzipped into one
folder, i.e. RAW/{val2017,annotations/instances_val2017.json}; `images/val2017` (mmseg's COCO-Stuff
layout) is found too.

Rule (SCLIP datasets/cvt_coco_object.py, after GroupViT): each of the 80 thing categories becomes
its mmseg COCO-Stuff train id plus one, i.e. its rank among the COCO thing category ids (1..80, in id
order); stuff and unlabelled pixels become 0 (background). SCLIP applies that table to the
stuffthingmaps, whose thing pixels COCO-Stuff rasterised from these instance annotations; zss
rasterises the instances itself with pycocotools (`annToMask`), as cocostuffapi's
`cocoSegmentationToSegmentationMap` does by default: non-crowd annotations only, in file order,
a later annotation over an earlier one.
Output: OUT/coco_object/{images/val2017/ID.jpg, annotations/val2017/ID_instanceTrainIds.png}.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from zss.errors import ZssError
from zss.eval.prepare.common import Item, convert, find_dir, missing, summary

# the 80 COCO category ids that are annotated (1..90 without 12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
THING_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
LABEL_OF = {cat: i + 1 for i, cat in enumerate(THING_IDS)}
SUFFIX = "_instanceTrainIds.png"
OFFICIAL_VAL = 5000
ANNOTATIONS = "annotations/instances_val2017.json"


def _load(path: Path) -> Any:
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its timings
            return COCO(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError, AssertionError, KeyError, TypeError) as exc:
        raise ZssError(f"{path} is not a COCO annotation file ({type(exc).__name__}: {str(exc)[:120]}): "
                       f"a damaged or half-extracted download?") from exc


def label_map(coco: Any, image_id: int) -> np.ndarray:
    """The 81-class map of one image (uint8, 0 = background)."""
    info = coco.imgs[image_id]
    out = np.zeros((int(info["height"]), int(info["width"])), dtype=np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
        if ann["category_id"] not in LABEL_OF:
            raise ZssError(f"annotation {ann['id']} has category {ann['category_id']}, not a COCO thing category")
        out[coco.annToMask(ann) == 1] = LABEL_OF[ann["category_id"]]
    return out


def prepare(raw: Path, out: Path) -> str:
    dirs = ["", "coco", "coco_stuff164k"]
    base = find_dir(raw, dirs, [ANNOTATIONS])
    if base is None:
        raise missing("COCO-Object: annotations_trainval2017.zip unzipped", raw / ANNOTATIONS)
    images = next((base / d for d in ("val2017", "images/val2017") if (base / d).is_dir()), None)
    if images is None:
        raise missing("COCO-Object: val2017.zip unzipped", base / "val2017")
    coco = _load(base / ANNOTATIONS)
    dest = out / "coco_object"
    items = []
    for image_id in sorted(coco.imgs, key=lambda i: coco.imgs[i]["file_name"]):
        name = coco.imgs[image_id]["file_name"]
        if not (images / name).is_file():
            raise missing("an image listed in instances_val2017.json", images / name, "the image archive is incomplete")
        items.append(Item(str(image_id), images / name, dest / "images/val2017" / name,
                          dest / "annotations/val2017" / f"{Path(name).stem}{SUFFIX}"))
    if not items:
        raise ZssError(f"{base / ANNOTATIONS} lists no images")
    done, skipped = convert(items, lambda item: label_map(coco, int(item.id)), "coco_object")
    return summary("coco_object", out, done, skipped, OFFICIAL_VAL, "coco_object")

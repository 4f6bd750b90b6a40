"""COCO-Stuff 164k: the official `stuffthingmaps_trainval2017` PNGs -> the 171 train ids.

Official download (mmseg's docs, "COCO Stuff 164k"): `val2017.zip` unzipped into `images/` and
`stuffthingmaps_trainval2017.zip` into `annotations/`, i.e. RAW/{images,annotations}/val2017
(RAW may also hold them under `coco_stuff164k/`). A stuffthingmap pixel is the COCO category id
minus one (0..181: 0..90 things, 91..181 stuff) or 255 (unlabelled).

Rule (mmseg tools/dataset_converters/coco_stuff164k.py, `clsID_to_trID`): the 171 ids that name a
category keep their order and become 0..170; 255 stays 255. The 11 ids of the 91 thing ids that
COCO never annotates (category ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91, minus one) never occur
in the maps; zss sends them to 255 (ignored) should they appear, where mmseg leaves them unchanged.
Output: OUT/coco_stuff164k/{images/val2017/ID.jpg, annotations/val2017/ID_labelTrainIds.png}.
"""

from __future__ import annotations

from pathlib import Path

from zss.eval.prepare.common import (Item, convert, find_dir, lookup_table, missing, pair, read_png, remap,
                                     summary)

UNUSED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)   # stuffthingmap ids of unannotated COCO categories
TRAIN_IDS = {raw: i for i, raw in enumerate(r for r in range(182) if r not in UNUSED)}
TRAIN_IDS[255] = 255
LUT = lookup_table(TRAIN_IDS, 256, 255)
SUFFIX = "_labelTrainIds.png"
OFFICIAL_VAL = 5000
DIRS = ["", "coco_stuff164k", "coco_stuff", "cocostuff"]


def prepare(raw: Path, out: Path) -> str:
    base = find_dir(raw, DIRS, ["images/val2017", "annotations/val2017"])
    if base is None:
        for need in ("images/val2017", "annotations/val2017"):
            if find_dir(raw, DIRS, [need]) is None:
                raise missing("COCO-Stuff: " + ("val2017.zip unzipped into images/" if need.startswith("images")
                              else "stuffthingmaps_trainval2017.zip unzipped into annotations/"), raw / need)
        raise missing("COCO-Stuff", raw / "images/val2017 and annotations/val2017 side by side")
    dest = out / "coco_stuff164k"
    pairs = pair(base / "images/val2017", ".jpg", base / "annotations/val2017", ".png",
                 skip=(SUFFIX, "_instanceTrainIds.png"))
    items = [Item(key, image, dest / "images/val2017" / image.name,
                  dest / "annotations/val2017" / f"{key}{SUFFIX}", label) for key, image, label in pairs]
    done, skipped = convert(items, lambda item: remap(LUT, read_png(item.source), item.source), "coco_stuff")
    return summary("coco_stuff", out, done, skipped, OFFICIAL_VAL, "coco_stuff")
